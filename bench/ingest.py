"""Benchmark 1: `POST /events` throughput and latency at 32 connections, beside the baseline.

Usage: .venv/bin/python -m bench.ingest [--connections 32] [--duration 15] [--workers 1]
       [--rounds 3] [--against OTHER_TREE]
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import harness

EVENT = {
    "name": "Deploy complete",
    "timestamp": "2026-03-04T14:25:00Z",
    "category": "TECHNICAL",
    "source": "ci-cd",
    "environment": "prod",
    "service": "api",
    "labels": ["release", "backend"],
    "metadata": {"commit": "1b2c3d4", "pipeline": "github-actions"},
}
TARGET = "Opsgraph ≥ 1.0× the baseline's req/s, p99 ≤ 2× the baseline's; every 2xx durable."


def run(
    *,
    connections: int,
    duration: float,
    workers: int,
    rounds: int = harness.ROUNDS,
    against: Path | None = None,
) -> str:
    body = json.dumps(EVENT)
    with (
        harness.throwaway_database() as database_url,
        harness.with_baseline(database_url, workers=workers) as baseline,
        harness.opsgraph_server(database_url, workers=workers) as (server, _admin),
        harness.against_server(database_url, against, workers=workers) as other,
    ):
        key = harness.create_key(database_url, "events:write")
        check = harness.Durability(database_url, '"change"')
        script = harness.lua_post("/events", body, {"Authorization": f"Bearer {key}"})
        compared = harness.alternate(
            [
                harness.Contender("baseline", baseline, "/events",
                                  harness.lua_post("/events", body, {})),
                harness.Contender("opsgraph", server, "/events", script, durability=check),
            ],
            database_url, connections=connections, duration=duration, rounds=rounds,
            against=other,
        )  # fmt: skip
        note = check.verdict()
    text = harness.table(
        f"Ingest: POST /events, {connections} connections", compared.rows, target=TARGET
    )
    note += "\n" + compared.round_ratios()
    print(note, flush=True)
    return f"{text}\n\n{note}"


def main() -> None:
    args = harness.arguments(__doc__, against=True).parse_args()
    harness.header("Ingest benchmark", args)
    run(
        connections=args.connections,
        duration=args.duration,
        workers=args.workers,
        rounds=args.rounds,
        against=args.against,
    )


if __name__ == "__main__":
    main()
