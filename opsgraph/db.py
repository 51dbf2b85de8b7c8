"""Database wiring: the Tortoise config, start-up (with migrations) and shut-down."""

from __future__ import annotations

from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.api import migrate as _migrate

from models import MODEL_MODULES
from opsgraph.settings import Settings

APP_LABEL = "models"


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The Tortoise config for one database URL (`sqlite://…` or `postgres://…`)."""
    return {
        "connections": {"default": normalise_url(database_url)},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def normalise_url(url: str) -> str:
    """Accept `postgresql://` as well as Tortoise's `postgres://` spelling."""
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url


async def migrate(settings: Settings) -> None:
    """Apply every pending migration to the configured database."""
    try:
        await _migrate(config=tortoise_config(settings.database_url))
    finally:
        await Tortoise.close_connections()


async def open_database(settings: Settings, *, run_migrations: bool = True) -> None:
    """Migrate, then open connections visible to every task of the process."""
    if run_migrations:
        await migrate(settings)
    await Tortoise.init(config=tortoise_config(settings.database_url), _enable_global_fallback=True)


async def close_database() -> None:
    """Close every connection opened by `open_database` and forget the models' wiring.

    Resetting the app registry lets one process open another database afterwards
    (the tests switch from SQLite to PostgreSQL); Tortoise offers no public call for it.
    """
    await Tortoise.close_connections()
    await Tortoise._reset_apps()
    EXECUTOR_CACHE.clear()  # its SQL is keyed by connection name, not by dialect
