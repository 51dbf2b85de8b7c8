"""`rest_compat.common.Answer`: the REST endpoints' JSON answers, written by orjson, are the
bytes Starlette's `JSONResponse` writes, and what orjson refuses is still answered."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import JSONResponse

from rest_compat.common import Answer

CONTENTS: list[Any] = [
    {"id": "chg_1", "status": "accepted", "timelineEntryId": "123"},
    {"toolCallStatus": "allowed", "matchedPolicies": [{"id": "pol_1", "dryRun": False}]},
    {"text": 'é ✓ 😀 </script> \u2028 "quoted" \\ \t\n\u0000', "nothing": None},
    {"numbers": [0, -1, 2**63 - 1, -(2**63), 0.5, -2.25, 1e-3], "empty": [{}, []]},
    [1, "two", True, False, None],
]


@pytest.mark.parametrize("content", CONTENTS)
def test_the_bytes_of_starlettes_json_response(content: Any) -> None:
    answer = Answer(content, status_code=202)
    assert answer.body == JSONResponse(content).body
    assert answer.status_code == 202
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-length"] == str(len(answer.body))


def test_what_orjson_refuses_is_written_as_starlette_writes_it() -> None:
    content = {"big": 2**64, "ids": [10**30]}
    assert (
        Answer(content).body
        == JSONResponse(content).body
        == b'{"big":18446744073709551616,"ids":[1000000000000000000000000000000]}'
    )
