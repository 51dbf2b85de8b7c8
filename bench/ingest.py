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


def run(*, connections: int, duration: float, workers: int) -> str:
    body = json.dumps(EVENT)
    rows: list[tuple[str, harness.LoadResult]] = []
    with harness.throwaway_database() as database_url:
        rows.append(("baseline", harness.run_baseline(
            database_url, "/events", harness.lua_post("/events", body, {}),
            connections=connections, duration=duration, workers=workers,
        )))  # fmt: skip
        with harness.opsgraph_server(database_url, workers=workers) as (server, _admin):
            key = harness.create_key(database_url, "events:write")
            script = harness.lua_post("/events", body, {"Authorization": f"Bearer {key}"})
            check = harness.Durability(database_url, '"change"')
            result = harness.measured(
                server, database_url, server.url + "/events", script,
                connections=connections, duration=duration, between=check.start,
            )  # fmt: skip
            rows.append(("opsgraph", result))
            note = check.verdict(result)
    text = harness.table(f"Ingest: POST /events, {connections} connections", rows, target=TARGET)
    print(note, flush=True)
    return f"{text}\n\n{note}"


def main() -> None:
    args = harness.arguments(__doc__).parse_args()
    harness.header("Ingest benchmark", args)
    run(connections=args.connections, duration=args.duration, workers=args.workers)


if __name__ == "__main__":
    main()
