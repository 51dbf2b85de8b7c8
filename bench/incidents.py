"""Benchmark 3: incidents, `POST /api/events` triggers over 1,000 dedup keys on one service,
beside the baseline (one INSERT of the same body per request).

The first trigger of each key opens an incident, the rest update it (count, last seen), so
this is mostly the dedup-and-update path, with concurrent triggers racing on one key.
Usage: .venv/bin/python -m bench.incidents [--connections 32] [--duration 15] [--workers 1]
       [--rounds 3] [--against OTHER_TREE]
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import harness

KEYS = 1000
TARGET = "none set; reported beside the baseline."


def trigger(routing_key: str) -> dict[str, object]:
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": "disk-full-$N",
        "payload": {
            "summary": "Disk 95% full on db-1",
            "source": "prometheus",
            "severity": "critical",
            "custom_details": {"mount": "/var/lib/postgresql", "free_gb": 4},
        },
    }


def run(
    *,
    connections: int,
    duration: float,
    workers: int,
    rounds: int = harness.ROUNDS,
    against: Path | None = None,
) -> str:
    template = json.dumps(trigger("R0000000000000000000000000000000"))
    with (
        harness.throwaway_database() as database_url,
        harness.with_baseline(database_url, workers=workers) as baseline,
        harness.opsgraph_server(database_url, workers=workers) as (server, _admin),
        harness.against_server(database_url, against, workers=workers) as other,
    ):
        env = harness.base_env(database_url)
        routing_key = harness.opsgraph_cli(env, "services", "create", "db")
        key = harness.create_key(database_url, "events:write", name="prometheus")
        script = harness.lua_post_template(
            "/api/events",
            json.dumps(trigger(routing_key)),
            {"Authorization": f"Bearer {key}"},
            count=KEYS,
        )
        compared = harness.alternate(
            [
                harness.Contender("baseline", baseline, "/api/events",
                                  harness.lua_post_template("/api/events", template, {},
                                                            count=KEYS)),
                harness.Contender("opsgraph", server, "/api/events", script),
            ],
            database_url, connections=connections, duration=duration, rounds=rounds,
            against=other,
        )  # fmt: skip
        incidents = harness.sql(database_url, "SELECT count(*) AS n FROM incident")[0]["n"]
    text = harness.table(
        f"Incidents: POST /api/events triggers over {KEYS:,} dedup keys, {connections} connections",
        compared.rows,
        target=TARGET,
    )
    note = (f"{incidents:,} incidents open afterwards (one per dedup key: {KEYS:,} expected).\n"
            f"{compared.round_ratios()}")  # fmt: skip
    print(note, flush=True)
    return f"{text}\n\n{note}"


def main() -> None:
    args = harness.arguments(__doc__, against=True).parse_args()
    harness.header("Incident benchmark", args)
    run(
        connections=args.connections,
        duration=args.duration,
        workers=args.workers,
        rounds=args.rounds,
        against=args.against,
    )


if __name__ == "__main__":
    main()
