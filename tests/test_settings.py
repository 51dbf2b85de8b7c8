"""Settings come from `OPSGRAPH_*` variables; each one is documented in the README."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from opsgraph.cli import main
from opsgraph.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_environment_overrides_defaults_with_types() -> None:
    settings = Settings.from_env(
        {
            "OPSGRAPH_PAGE_SIZE_MAX": "10",
            "OPSGRAPH_MASK_ERRORS": "false",
            "OPSGRAPH_RATE_LIMIT_PER_SECOND": "2.5",
            "OPSGRAPH_PUBLIC_URL": "https://ops.example/",
            "OPSGRAPH_SUBSCRIBER_QUEUE_SIZE": "500",  # the least it may be
        }
    )
    assert settings.page_size_max == 10
    assert settings.subscriber_queue_size == 500
    assert settings.page_size_default == 10  # lowered with the maximum
    assert settings.mask_errors is False
    assert settings.rate_limit_per_second == 2.5
    assert settings.approval_url("ap_1") == "https://ops.example/approvals?focus=ap_1"


def test_bad_values_name_the_variable_and_what_it_takes() -> None:
    """Python's "invalid literal for int() with base 10: 'lots'" read as the program's fault."""
    with pytest.raises(ValueError) as whole:
        Settings.from_env({"OPSGRAPH_PAGE_SIZE_MAX": "lots"})
    assert str(whole.value) == "OPSGRAPH_PAGE_SIZE_MAX: must be a whole number, not 'lots'"
    with pytest.raises(ValueError) as number:
        Settings.from_env({"OPSGRAPH_RATE_LIMIT_PER_SECOND": "fast"})
    assert str(number.value) == "OPSGRAPH_RATE_LIMIT_PER_SECOND: must be a number, not 'fast'"


@pytest.mark.parametrize(
    "name", ["OPSGRAPH_MAX_INCIDENT_EVENTS_PER_CALL", "OPSGRAPH_BATCH_MAX", "OPSGRAPH_WORKERS"]
)
def test_a_limit_nothing_could_pass_is_refused(name: str) -> None:
    """0 events per call would answer every REST event 400: refused at start instead."""
    with pytest.raises(ValueError, match=f"{name}: must be at least 1"):
        Settings.from_env({name: "0"})


CENTURY = r"\(a hundred years\)"
TEN_YEARS = r"must be at most 315360000 \(ten years\)"
STORES = "must be empty or start with redis://, rediss://, memory://"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("OPSGRAPH_GRAPHQL_MAX_ALIASES", "-1", "must be at least 0"),
        ("OPSGRAPH_RATE_LIMIT_PER_SECOND", "-2.5", "must be at least 0"),
        ("OPSGRAPH_RATE_LIMIT_PER_SECOND", "nan", "must be a finite number"),
        ("OPSGRAPH_APPROVAL_SWEEP_SECONDS", "0", "must be above 0"),
        ("OPSGRAPH_BUS_HEARTBEAT_SECONDS", "inf", "must be a finite number"),
        ("OPSGRAPH_RATE_LIMIT_BURST", "0", "must be at least 1"),
        ("OPSGRAPH_APPROVAL_EXPIRY_SECONDS", "0", "must be at least 1"),
        # The hub hands a subscriber up to 500 entries at once: a smaller queue would end
        # subscribers that keep up whenever a commit brings more.
        ("OPSGRAPH_SUBSCRIBER_QUEUE_SIZE", "499", "must be at least 500, .* at once"),
        # Spans so long that the dates computed from them are out of range (a 500 each).
        ("OPSGRAPH_TIMESTAMP_MAX_AGE_DAYS", "1000000", rf"must be at most 36500 {CENTURY}"),
        ("OPSGRAPH_TIMESTAMP_MAX_AHEAD_SECONDS", "99999999999999", rf"{TEN_YEARS}"),
        ("OPSGRAPH_APPROVAL_EXPIRY_SECONDS", "99999999999999", rf"{TEN_YEARS}"),
        ("OPSGRAPH_RATE_LIMIT_REDIS_URL", "redis//127.0.0.1:6379/7", STORES),
        ("OPSGRAPH_RATE_LIMIT_REDIS_URL", "http://x", STORES),
    ],
)  # fmt: skip
def test_a_number_nothing_could_work_with_is_refused(name: str, value: str, problem: str) -> None:
    """-1 aliases would refuse every aliased query, a sweep every 0 s would spin, and a rate
    limit store named without its scheme would quietly limit per process."""
    with pytest.raises(ValueError, match=f"^{name}: {problem}$"):
        Settings.from_env({name: value})


def test_the_default_page_cannot_be_larger_than_the_largest() -> None:
    with pytest.raises(ValueError, match="PAGE_SIZE_DEFAULT: must not be above .*PAGE_SIZE_MAX"):
        Settings.from_env({"OPSGRAPH_PAGE_SIZE_DEFAULT": "500"})
    settings = Settings.from_env(
        {"OPSGRAPH_PAGE_SIZE_DEFAULT": "500", "OPSGRAPH_PAGE_SIZE_MAX": "500"}
    )
    assert settings.page_size_default == settings.page_size_max == 500
    assert Settings.from_env({"OPSGRAPH_GRAPHQL_MAX_ALIASES": "0"}).graphql_max_aliases == 0


def test_zero_still_switches_off_what_it_switches_off() -> None:
    settings = Settings.from_env(
        {"OPSGRAPH_RATE_LIMIT_PER_SECOND": "0", "OPSGRAPH_GC_THRESHOLD": "0"}
    )
    assert settings.rate_limit_per_second == 0 and settings.gc_threshold == 0


def test_the_cli_names_a_bad_value_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPSGRAPH_MAX_CHANGES_PER_CALL", "0")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err == "opsgraph: OPSGRAPH_MAX_CHANGES_PER_CALL: must be at least 1\n"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    for field in fields(Settings):
        assert f"OPSGRAPH_{field.name.upper()}" in text, field.name


@pytest.mark.parametrize(
    ("env", "base"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"OPSGRAPH_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"OPSGRAPH_HOST": "0.0.0.0", "OPSGRAPH_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"OPSGRAPH_HOST": "::1"}, "http://[::1]:8000"),
        ({"OPSGRAPH_HOST": "::"}, "http://[::1]:8000"),
        ({"OPSGRAPH_HOST": "fe80::1%eth0"}, "http://[fe80::1%25eth0]:8000"),
        ({"OPSGRAPH_HOST": "ops.internal", "OPSGRAPH_PORT": "80"}, "http://ops.internal:80"),
        (
            {"OPSGRAPH_PUBLIC_URL": "https://ops.example.com/", "OPSGRAPH_PORT": "9000"},
            "https://ops.example.com",
        ),  # fmt: skip
    ],
)
def test_links_go_where_the_server_is_reached(env: dict[str, str], base: str) -> None:
    """Approval links said port 8000 whatever the server listened on."""
    settings = Settings.from_env(env)
    assert settings.approval_url("ap_1") == f"{base}/approvals?focus=ap_1"


def test_a_public_url_that_is_no_web_address_is_refused() -> None:
    with pytest.raises(ValueError, match="OPSGRAPH_PUBLIC_URL: must be empty or start with"):
        Settings.from_env({"OPSGRAPH_PUBLIC_URL": "ops.example.com"})
