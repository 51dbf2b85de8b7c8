"""Benchmark 4: fan-out. N WebSocket subscribers (graphql-transport-ws, one connection each)
on ONE server process follow `timeline`; events are posted at a steady rate; each client
notes when each event reaches it. Reports event-to-client latency p50/p99, how many
deliveries arrived, and the server's memory per idle subscriber.

Clients run in separate processes (`--client-procs`) so the load generator is not the
bottleneck it measures; latency is the time from just before the POST to the moment the
client has parsed the message (one machine, one clock).
Usage: .venv/bin/python -m bench.fanout [--subscribers 1000 5000 10000] [--rate 20] [--duration 15]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import harness, lean_ws

TARGET = ("5,000 subscribers on one process, p99 under 250 ms at 20 events/s, "
          "idle memory under 20 KB per subscriber.")  # fmt: skip
SUBSCRIPTION = "subscription { timeline { id summary occurredAt } }"


@dataclass
class FanoutResult:
    subscribers: int
    connected: int
    rate: float
    posted: int
    expected: int
    delivered: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    idle_kib_per_subscriber: float
    server_cpu_percent: float
    server_us_per_message: float
    clients_cpu_percent: float  # the load generator's processes, of one core


def _client_process(url: str, key: str, count: int, go: Any, done: Any, results: Any) -> None:
    """One client process: `count` lean subscribers; reports (connected, latencies)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        address = urlsplit(url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        latencies: list[float] = []
        pending: list[asyncio.Future[bool]] = []
        clients: list[lean_ws.Subscriber] = []
        for index in range(count):
            subscribed: asyncio.Future[bool] = loop.create_future()
            pending.append(subscribed)

            def factory(subscribed: asyncio.Future[bool] = subscribed) -> lean_ws.Subscriber:
                return lean_ws.Subscriber(host=f"{host}:{port}", path=address.path, key=key,
                                          query=SUBSCRIPTION, latencies=latencies,
                                          subscribed=subscribed)  # fmt: skip

            try:
                _, client = await loop.create_connection(factory, host, port)
                clients.append(client)
            except OSError:
                subscribed.set_result(False)
            if index % 100 == 99:
                await asyncio.sleep(0.05)  # do not flood the accept queue
        done_, _ = await asyncio.wait(pending, timeout=60)
        results.put(("connected", sum(1 for f in done_ if f.result())))
        while not done.is_set():
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the last deliveries
        for client in clients:
            client.close()
        results.put(("latencies", latencies))

    asyncio.run(main())


def run_one(server: harness.Server, admin: str, writer: str, *, subscribers: int, rate: float,
            duration: float, procs: int, database_url: str) -> FanoutResult:  # fmt: skip
    ws_url = server.url.replace("http://", "ws://") + "/graphql"
    context = multiprocessing.get_context("spawn")
    go, done, results = context.Event(), context.Event(), context.Queue()
    rss_before = server.rss_kib()
    shares = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
    workers = [
        context.Process(
            target=_client_process, args=(ws_url, admin, n, go, done, results), daemon=True
        )
        for n in shares
    ]
    for worker in workers:
        worker.start()
    try:
        connected = sum(results.get(timeout=180)[1] for _ in workers)
        time.sleep(2)
        idle_kib = (server.rss_kib() - rss_before) / max(1, connected)
        cpu_before = harness._cpu_seconds(server.pids())
        clients = [worker.pid for worker in workers if worker.pid is not None]
        clients_before = harness._cpu_seconds(clients)
        stored_before = harness.sql(
            database_url, "SELECT count(*) AS n FROM change WHERE name LIKE 'fanout %'"
        )[0]["n"]
        profiler = None
        if harness.PROFILE_DIR:  # a py-spy profile of the server while events are posted
            profiler = harness._py_spy(server, f"{server.url}/fanout", duration)
        posted, started = asyncio.run(_post(server.url, writer, rate=rate, duration=duration))
        if profiler is not None:
            profiler.wait(timeout=60)
        elapsed = time.monotonic() - started
        cpu = harness._cpu_seconds(server.pids()) - cpu_before
        clients_cpu = harness._cpu_seconds(clients) - clients_before
        done.set()
        latencies: list[float] = []
        for _ in workers:
            kind, value = results.get(timeout=180)
            if kind == "latencies":
                latencies.extend(value)
        # Every message has arrived by now: the server's CPU for all of them, backlog included.
        cpu_all = harness._cpu_seconds(server.pids()) - cpu_before
        for worker in workers:
            worker.join(timeout=30)
    except BaseException:  # never leave the client processes waiting
        done.set()
        for worker in workers:
            worker.terminate()
        raise
    latencies.sort()
    # Every stored event counts, including any whose POST timed out on a saturated server.
    stored = (
        harness.sql(database_url, "SELECT count(*) AS n FROM change WHERE name LIKE 'fanout %'")[0][
            "n"
        ]
        - stored_before
    )

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return FanoutResult(
        subscribers=subscribers, connected=connected, rate=stored / elapsed, posted=posted,
        expected=stored * connected, delivered=len(latencies), p50_ms=pct(0.50),
        p99_ms=pct(0.99), max_ms=latencies[-1] * 1000 if latencies else 0,
        idle_kib_per_subscriber=idle_kib, server_cpu_percent=100 * cpu / elapsed,
        server_us_per_message=1e6 * cpu_all / max(1, len(latencies)),
        clients_cpu_percent=100 * clients_cpu / elapsed,
    )  # fmt: skip


async def _post(url: str, key: str, *, rate: float, duration: float) -> tuple[int, float]:
    """POST one change every 1/rate seconds, on schedule however long each answer takes."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:

        async def post_one() -> bool:
            event = {"name": f"fanout {time.time():.6f}", "timestamp": "2026-03-04T14:25:00Z",
                     "category": "TECHNICAL", "source": "bench", "service": "api"}  # fmt: skip
            try:
                return (await http.post("/events", json=event)).status_code == 201
            except httpx.HTTPError:  # a saturated server: counted as not posted
                return False

        started = time.monotonic()
        sent: list[asyncio.Task[bool]] = []
        while time.monotonic() - started < duration:
            pause = started + len(sent) / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            sent.append(asyncio.create_task(post_one()))
        outcomes = await asyncio.gather(*sent)
    return sum(outcomes), started


def table(results: list[FanoutResult]) -> str:
    out = ["\n## Fan-out: timeline subscribers on one server process", "",
           "| subscribers | connected | events/s | delivered / expected | p50 ms | p99 ms "
           "| max ms | idle KiB/subscriber | server CPU % | server µs/message "
           "| clients CPU % |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        out.append(
            f"| {r.subscribers:,} | {r.connected:,} | {r.rate:.1f} | {r.delivered:,} / "
            f"{r.expected:,} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.max_ms:.0f} "
            f"| {r.idle_kib_per_subscriber:.1f} | {r.server_cpu_percent:.0f} "
            f"| {r.server_us_per_message:.1f} | {r.clients_cpu_percent:.0f} |"
        )
    out += ["", f"Target: {TARGET}"]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def _enough_files(subscribers: int) -> bool:
    """Whether the server process (and each client process) may open a socket per
    subscriber and some more, raising this process's soft limit, which they inherit, up to
    the hard one if need be."""
    needed = subscribers + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            return False
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return True


def run(*, subscribers: list[int], rate: float, duration: float, procs: int) -> str:
    results = []
    with harness.throwaway_database() as database_url:
        for count in subscribers:  # a fresh server for each size: memory starts clean
            if not _enough_files(count):
                print(f"  {count:,} subscribers: skipped, the open-files limit is too low")
                continue
            with harness.opsgraph_server(
                database_url, workers=1, OPSGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION="1"
            ) as (server, admin):
                writer = harness.create_key(database_url, "events:write", name="poster")
                result = run_one(
                    server, admin, writer, subscribers=count, rate=rate, duration=duration,
                    procs=procs, database_url=database_url,
                )  # fmt: skip
                results.append(result)
                got = f"{result.delivered:,}/{result.expected:,}"
                print(f"  {count:,} subscribers: p99 {result.p99_ms:.0f} ms, {got} delivered")
    return table(results)


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--rate", type=float, default=20.0, help="events posted per second")
    parser.add_argument("--client-procs", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    harness.header("Fan-out benchmark", args)
    run(subscribers=args.subscribers, rate=args.rate, duration=args.duration,
        procs=args.client_procs)  # fmt: skip


if __name__ == "__main__":
    main()
