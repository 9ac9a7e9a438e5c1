"""The vpn-ca service's tables."""

from centralino_proto.db import service_registry
from sqlmodel import SQLModel


class Model(SQLModel, registry=service_registry()):
    """Base of this service's tables (its own MetaData, migrated by its own Alembic)."""
