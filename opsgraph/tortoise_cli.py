"""The Tortoise config for its own CLI (`tortoise -c opsgraph.tortoise_cli.TORTOISE_ORM`)."""

from opsgraph.db import tortoise_config
from opsgraph.settings import Settings

TORTOISE_ORM = tortoise_config(Settings.from_env().database_url)
