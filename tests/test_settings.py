"""Settings come from `OPSGRAPH_*` variables; each one is documented in the README."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from opsgraph.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_environment_overrides_defaults_with_types() -> None:
    settings = Settings.from_env(
        {
            "OPSGRAPH_PAGE_SIZE_MAX": "10",
            "OPSGRAPH_MASK_ERRORS": "false",
            "OPSGRAPH_RATE_LIMIT_PER_SECOND": "2.5",
            "OPSGRAPH_PUBLIC_URL": "https://ops.example/",
        }
    )
    assert settings.page_size_max == 10
    assert settings.mask_errors is False
    assert settings.rate_limit_per_second == 2.5
    assert settings.approval_url("ap_1") == "https://ops.example/approvals?focus=ap_1"


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="OPSGRAPH_PAGE_SIZE_MAX"):
        Settings.from_env({"OPSGRAPH_PAGE_SIZE_MAX": "lots"})


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    for field in fields(Settings):
        assert f"OPSGRAPH_{field.name.upper()}" in text, field.name
