"""The `opsgraph` command's keys and services commands name what is wrong, without a
traceback, and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_server import run_cli


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory whose embedded database is migrated (one workspace, its admin key)."""
    migrated = run_cli(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "create", "--name", "ci", "--scopes", "events:write"],
        ["keys", "list"],
        ["keys", "revoke", "key_unknown"],
        ["services", "create", "checkout"],
    ],
)
def test_an_unknown_workspace_is_named(workdir: Path, command: list[str]) -> None:
    done = run_cli(workdir, *command, "--workspace", "ws_nope")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "opsgraph: no workspace ws_nope\n"
    keys = run_cli(workdir, "keys", "list")
    assert [line.split("\t")[2] for line in keys.stdout.splitlines()] == ["admin"]


def test_the_default_workspace_is_used_without_the_option(workdir: Path) -> None:
    created = run_cli(workdir, "services", "create", "checkout")
    assert created.returncode == 0, created.stderr
    again = run_cli(workdir, "services", "create", "checkout")
    assert again.returncode == 1
    assert again.stderr == "opsgraph: A service named 'checkout' already exists.\n"
