"""How `opsgraph serve` logs: every line stamped with its UTC time and level, uvicorn's and
the app's alike, and the database driver's retries through an outage in a line each rather
than a traceback each."""

from __future__ import annotations

import logging
import time
from typing import Any

from uvicorn.logging import AccessFormatter, DefaultFormatter

from opsgraph.db import database_unavailable

# The packages whose loggers are this app's (`logging.getLogger(__name__)` in each).
APP_PACKAGES = ("opsgraph", "resolvers", "schema", "rest_compat", "models")


class _UtcTime(logging.Formatter):
    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


class Formatter(_UtcTime, DefaultFormatter):
    """uvicorn's level prefix (`INFO:     `), after the time."""


class AccessLineFormatter(_UtcTime, AccessFormatter):
    """uvicorn's access line, after the time."""


class OutageInOneLine(logging.Filter):
    """A record of the database driver's whose exception means the database is unreachable
    loses its traceback and names the exception instead: asyncpg's pool, restoring its
    floor of connections through an outage, printed a traceback per retry that said
    nothing the exception's name and message do not. The app's own records keep theirs
    (an error met while handling a timeout is still a bug to read in full)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not record.name.startswith("asyncpg"):
            return True
        try:
            if database_unavailable(exc):
                record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
                record.args = None
                record.exc_info = None
                record.exc_text = None
        except Exception:  # a record that cannot be read is logging's to report, as ever
            pass
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's `log_config` for `opsgraph serve`: its own loggers as uvicorn sets them up,
    with the time in front; the app's loggers (and any other library's warnings, asyncio's
    included) through one handler that also names the logger."""
    line = "%(asctime)s %(levelprefix)s %(message)s"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"outage": {"()": "opsgraph.logs.OutageInOneLine"}},
        "formatters": {
            "default": {"()": "opsgraph.logs.Formatter", "fmt": line, "use_colors": None},
            "named": {
                "()": "opsgraph.logs.Formatter",
                "fmt": "%(asctime)s %(levelprefix)s %(name)s: %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": "opsgraph.logs.AccessLineFormatter",
                "fmt": '%(asctime)s %(levelprefix)s %(client_addr)s - "%(request_line)s"'
                " %(status_code)s",
            },
        },
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "named": {
                "formatter": "named",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["outage"],
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            **{name: {"level": "INFO"} for name in APP_PACKAGES},
        },
        "root": {"handlers": ["named"], "level": "WARNING"},
    }
