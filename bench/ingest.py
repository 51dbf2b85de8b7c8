"""Benchmark 1: `POST /events` throughput and latency at 32 connections, beside the baseline.

Usage: .venv/bin/python -m bench.ingest [--connections 32] [--duration 15] [--workers 1]
"""

from __future__ import annotations

import json

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


def run(*, connections: int, duration: float, workers: int, rounds: int = harness.ROUNDS) -> str:
    body = json.dumps(EVENT)
    with (
        harness.throwaway_database() as database_url,
        harness.with_baseline(database_url, workers=workers) as baseline,
        harness.opsgraph_server(database_url, workers=workers) as (server, _admin),
    ):
        key = harness.create_key(database_url, "events:write")
        check = harness.Durability(database_url, '"change"')
        compared = harness.alternate(
            [
                harness.Contender("baseline", baseline, "/events",
                                  harness.lua_post("/events", body, {})),
                harness.Contender("opsgraph", server, "/events",
                                  harness.lua_post("/events", body,
                                                   {"Authorization": f"Bearer {key}"}),
                                  durability=check),
            ],
            database_url, connections=connections, duration=duration, rounds=rounds,
        )  # fmt: skip
        note = check.verdict()
    text = harness.table(
        f"Ingest: POST /events, {connections} connections", compared.rows, target=TARGET
    )
    note += "\n" + compared.round_ratios()
    print(note, flush=True)
    return f"{text}\n\n{note}"


def main() -> None:
    args = harness.arguments(__doc__).parse_args()
    harness.header("Ingest benchmark", args)
    run(
        connections=args.connections,
        duration=args.duration,
        workers=args.workers,
        rounds=args.rounds,
    )


if __name__ == "__main__":
    main()
