"""CPU per request of the app itself, driven in-process: the ASGI app called directly, 32
requests at a time, no sockets, no uvicorn, no load generator sharing the machine. On this
machine kind, whose speed drifts within minutes, it is the steadiest measure of a change
to the request path: `--against OTHER_TREE` runs this tree and another (a `git worktree`
of an older commit, say) in turns on the same database and prints both medians.

Usage: .venv/bin/python -m bench.cpu [--kind events|agents|incidents|timeline]
       [--requests 6400] [--rounds 5] [--against /path/to/other/tree]
`timeline` is benchmark 5's page (first 50 by service and label) over 100,000 entries.
Not a test and not a throughput figure: the HTTP server's own cost is left out (see the
other benchmarks for that).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONCURRENCY = 32
TIMELINE_ENTRIES = 100_000
HERE = Path(__file__).resolve()


async def _drive(spec: dict[str, Any], requests: int) -> float:
    """Start the app of the tree on `sys.path`, send `requests` (after a warm-up): µs of
    this process's CPU per request."""
    from opsgraph.app import create_app
    from opsgraph.cli import tune_gc
    from opsgraph.settings import Settings

    settings = Settings.from_env(spec["env"])
    app = create_app(settings, run_migrations=False)
    state: dict[str, Any] = {}
    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    done: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    task = asyncio.create_task(app(lifespan, startup.get, done.put))  # type: ignore[arg-type]
    if (await done.get())["type"] != "lifespan.startup.complete":
        raise SystemExit("the app did not start")
    tune_gc(settings)
    headers = [(k.lower().encode(), v.encode()) for k, v in spec["headers"].items()]
    path, template = spec["path"], spec["template"]
    numbers = itertools.count()
    prefix = os.urandom(4).hex()

    async def one() -> None:
        n = next(numbers)
        text = template.replace("$UNIQ", f"{prefix}-{n}").replace("$N", str(n % spec["count"]))
        body = text.encode()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80), "state": dict(state),
            "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()), *headers],
        }  # fmt: skip
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # nothing more: the client stays
            return {"type": "http.disconnect"}

        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)  # type: ignore[arg-type]
        if not status or status[0] >= 300:
            raise SystemExit(f"{path} answered {status}")

    async def run(count: int) -> None:
        async def worker(share: int) -> None:
            for _ in range(share):
                await one()

        await asyncio.gather(*(worker(count // CONCURRENCY) for _ in range(CONCURRENCY)))

    await run(CONCURRENCY * 20)  # warm-up: caches, prepared statements
    gc.collect()
    started = time.process_time()
    await run(requests)
    spent = time.process_time() - started
    await startup.put({"type": "lifespan.shutdown"})
    await done.get()
    await task
    return spent * 1e6 / (requests // CONCURRENCY * CONCURRENCY)


def _prepare(kind: str, database_url: str) -> dict[str, Any]:
    """Keys, policies, a service or entries as the benchmark of `kind` has them."""
    from bench import agents, harness, incidents, ingest, timeline_query

    env = harness.base_env(database_url, OPSGRAPH_ACCESS_LOG="false")
    printed = harness.opsgraph_cli(env, "migrate").splitlines()
    admin = printed[-1].strip()
    writer = harness.create_key(database_url, "events:write")
    env = {k: v for k, v in env.items() if k.startswith("OPSGRAPH_")}
    if kind == "events":
        return {"env": env, "path": "/events", "template": json.dumps(ingest.EVENT), "count": 1,
                "headers": {"Authorization": f"Bearer {writer}"}}  # fmt: skip
    if kind == "incidents":
        routing_key = harness.opsgraph_cli(
            harness.base_env(database_url), "services", "create", "db"
        )
        template = json.dumps(incidents.trigger(routing_key))
        return {"env": env, "path": "/api/events", "template": template, "count": incidents.KEYS,
                "headers": {"Authorization": f"Bearer {writer}"}}  # fmt: skip
    if kind == "timeline":
        timeline_query.load(database_url, TIMELINE_ENTRIES)
        reader = harness.create_key(database_url, "read", name="reader")
        template = json.dumps(
            {"query": timeline_query.QUERY, "variables": {"service": "svc-$N", "label": "label-7"}}
        )
        return {"env": env, "path": "/graphql", "template": template,
                "count": timeline_query.SERVICES,
                "headers": {"Authorization": f"Bearer {reader}"}}  # fmt: skip
    with harness.opsgraph_server(database_url) as (server, _):
        agents.create_policies(server, admin)
    return {"env": env, "path": "/v1/events", "template": json.dumps(agents.TOOL_CALLED),
            "count": agents.RUNS, "headers": {"X-API-Key": writer}}  # fmt: skip


def _round(tree: Path, spec: dict[str, Any], requests: int) -> float:
    """One measured round in a fresh process importing `tree`'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_CPU_SPEC": json.dumps(spec)}
    done = subprocess.run(
        [sys.executable, str(HERE), "--child", str(requests)],
        env=env, capture_output=True, text=True, check=False, cwd=tree,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"round in {tree} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        spec = json.loads(os.environ["BENCH_CPU_SPEC"])
        print(f"{asyncio.run(_drive(spec, int(sys.argv[2]))):.1f}")
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    kinds = ["events", "agents", "incidents", "timeline"]
    parser.add_argument("--kind", choices=kinds, default="events")
    parser.add_argument("--requests", type=int, default=6400, help="measured per round")
    parser.add_argument("--rounds", type=lambda text: max(1, int(text)), default=5)
    parser.add_argument("--against", type=Path, help="another tree, run in turns with this one")
    args = parser.parse_args()

    from bench import harness

    trees = [HERE.parent.parent] + ([args.against.resolve()] if args.against else [])
    figures: dict[Path, list[float]] = {tree: [] for tree in trees}
    with harness.throwaway_database("opsgraph_cpu") as database_url:
        spec = _prepare(args.kind, database_url)
        for number in range(1, args.rounds + 1):
            for tree in trees:
                figures[tree].append(_round(tree, spec, args.requests))
                print(f"round {number}: {tree}: {figures[tree][-1]:.0f} µs/request", flush=True)
    print(f"\nCPU per {args.kind} request, in-process, {CONCURRENCY} at a time (median of "
          f"{args.rounds} rounds of {args.requests:,}):")  # fmt: skip
    base = statistics.median(figures[trees[0]])
    for tree, values in figures.items():
        median = statistics.median(values)
        print(f"  {tree}: {median:.0f} µs ({median / base:.2f}× this tree)")


if __name__ == "__main__":
    main()
