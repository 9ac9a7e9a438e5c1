from alembic import context

from centralino_proto.db import plumbing_metadata
from centralino_proto.migrations import run_env
from centralino_routing.models import Model

run_env(context, [Model.metadata, plumbing_metadata])
