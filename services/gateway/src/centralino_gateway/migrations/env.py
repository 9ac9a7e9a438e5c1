from alembic import context

from centralino_gateway.models import Model
from centralino_proto.db import plumbing_metadata
from centralino_proto.migrations import run_env

run_env(context, [Model.metadata, plumbing_metadata])
