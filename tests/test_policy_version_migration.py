"""Migration 0004 on a database that already has workspaces: each starts at policy
version 0 (run in a child process: migrating closes the process's connections)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import postgres_database

SCRIPT = """
import asyncio, sys
from tortoise import Tortoise, connections
from tortoise.migrations.api.migrate import migrate
from opsgraph.db import tortoise_config

async def main(url):
    config = tortoise_config(url)
    await migrate(config=config, target="models.0003_agents")
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    await connections.get("default").execute_query(
        "INSERT INTO workspace (id, name, timeline_seq, created_at)"
        " VALUES ('ws_old', 'old', 7, CURRENT_TIMESTAMP)"
    )
    await Tortoise.close_connections()
    await migrate(config=config)
    await Tortoise.init(config=config)
    _, rows = await connections.get("default").execute_query(
        "SELECT policy_version, timeline_seq FROM workspace WHERE id = 'ws_old'"
    )
    print(tuple(rows[0]))
    await Tortoise.close_connections()

asyncio.run(main(sys.argv[1]))
"""


def upgrade(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_existing_workspaces_start_at_version_zero(tmp_path: Path) -> None:
    assert upgrade(f"sqlite://{tmp_path / 'old.sqlite3'}") == "(0, 7)"
    with postgres_database() as url:
        assert upgrade(url) == "(0, 7)"
