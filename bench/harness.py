"""What every benchmark shares: a throwaway PostgreSQL database, server processes, wrk runs
driven by a generated Lua script, and a table printing Opsgraph beside the baseline.

Nothing here is a test: benchmarks print figures, they never assert timings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OPSGRAPH = str(BIN / "opsgraph")
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Set to a folder to record a py-spy flame graph of Opsgraph during each measured run
# (BENCH_PROFILE_FORMAT=raw: collapsed stacks instead of an SVG).
PROFILE_DIR = os.environ.get("BENCH_PROFILE_DIR", "")
# The bus for several workers (`--workers 2`); empty: the benchmark's PostgreSQL database.
BROADCAST_URL = os.environ.get("BENCH_BROADCAST_URL", "redis://127.0.0.1:6379")
# Defaults every script accepts on its command line; `make bench` uses them.
DURATION = float(os.environ.get("BENCH_DURATION", "15"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
# Turns each server takes (`alternate`): the measured duration is split between them.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def machine() -> str:
    """nproc, CPU model and memory, for the README."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({cpu}), {memory} RAM, Python {platform.python_version()}, "
            f"load average {load} at start")  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- PostgreSQL ---------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database(prefix: str = "opsgraph_bench") -> Iterator[str]:
    """Create a fresh database on the local server, yield its URL, drop it afterwards."""
    import asyncio

    name = f"{prefix}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sql(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on `url` (blocking) and return its rows."""
    import asyncio

    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return list(await connection.fetch(statement, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def sql_script(url: str, script: str) -> None:
    """Run several `;`-separated statements on `url` (blocking)."""
    import asyncio

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(script)
        finally:
            await connection.close()

    asyncio.run(run())


# --- processes ----------------------------------------------------------------------


@dataclass
class Server:
    """A server process listening on 127.0.0.1:port."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        """Resident memory of the server and its children (workers), in KiB."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total

    def pids(self) -> list[int]:
        return [self.process.pid, *_children(self.process.pid)]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found.append(int(child))
            found.extend(_children(int(child)))
    return found


@contextlib.contextmanager
def serve(
    name: str, argv: Sequence[str], *, port: int, env: dict[str, str], health: str = "/healthz"
) -> Iterator[Server]:
    """Start a server process, wait until `health` answers, stop it afterwards."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name=name, process=process, port=port, log=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + health, timeout=1).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.unlink(missing_ok=True)


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSGRAPH_")}
    env.update(OPSGRAPH_DATABASE_URL=database_url, PYTHONUNBUFFERED="1", **extra)
    return env


def opsgraph_cli(env: dict[str, str], *args: str) -> str:
    """Run `opsgraph ARGS` and return its stdout (a printed secret, for instance)."""
    done = subprocess.run(
        [OPSGRAPH, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"opsgraph {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


@contextlib.contextmanager
def opsgraph_server(
    database_url: str, *, workers: int = WORKERS, tree: Path | None = None, **settings: str
) -> Iterator[tuple[Server, str]]:
    """Migrate, create an admin key, start `opsgraph serve` (the code of `tree`, if given:
    another checkout); yields (server, admin key)."""
    if workers > 1:  # the workers need a shared bus; Redis if it runs, else PostgreSQL
        settings.setdefault("OPSGRAPH_BROADCAST_URL", BROADCAST_URL or database_url)
    if tree is not None:  # ahead of the installed (editable) package
        settings["PYTHONPATH"] = str(tree)
    env = base_env(database_url, OPSGRAPH_ACCESS_LOG="false", **settings)
    printed = opsgraph_cli(env, "migrate").splitlines()  # the admin key, on a new database
    admin_key = printed[-1].strip() if printed else create_key(database_url, "admin", "admin")
    port = free_port()
    argv = [OPSGRAPH, "serve", "--port", str(port)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    with serve("opsgraph" if tree is None else AGAINST, argv, port=port, env=env) as server:
        yield server, admin_key


AGAINST = "against"  # the name of the other tree's server (`--against`) in the tables


@contextlib.contextmanager
def against_server(
    database_url: str, tree: Path | None, *, workers: int = WORKERS
) -> Iterator[Server | None]:
    """Opsgraph from another tree (`--against`) on the same database, to load in the same
    turns as this tree's; None without one."""
    if tree is None:
        yield None
        return
    with opsgraph_server(database_url, workers=workers, tree=tree.resolve()) as (server, _):
        yield server


@contextlib.contextmanager
def baseline_server(database_url: str, *, workers: int = WORKERS) -> Iterator[Server]:
    """The floor of this stack: bare Starlette + one asyncpg statement per request."""
    port = free_port()
    env = base_env(database_url, BENCH_BASELINE_DATABASE_URL=database_url)
    argv = [
        str(BIN / "python"), "-m", "uvicorn", "bench.baseline_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        "--log-level", "warning", "--workers", str(workers),
    ]  # fmt: skip
    with serve("baseline", argv, port=port, env=env) as server:
        yield server


# --- load generation ----------------------------------------------------------------


def _lua_string(value: str) -> str:
    level = 0
    while f"]{'=' * level}]" in value:
        level += 1
    return f"[{'=' * level}[{value}]{'=' * level}]"


# The latency distribution each wrk run reports, as this many evenly spaced quantiles (so
# that rounds pool into one distribution: wrk's own percentiles cannot be averaged).
QUANTILES = 1000
DONE = """
function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  local q = {}
  for i = 1, @COUNT@ do q[i] = latency:percentile((i - 0.5) * 100 / @COUNT@) end
  io.write("BENCH_QUANTILES ", table.concat(q, ","), "\\n")
end
""".replace("@COUNT@", str(QUANTILES))


def lua_post(path: str, body: str, headers: dict[str, str]) -> str:
    """A wrk script posting one fixed JSON body."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.path = {_lua_string(path)}",
        f"wrk.body = {_lua_string(body)}",
    ]
    headers = {"Content-Type": "application/json", **headers}
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + DONE


def lua_post_template(
    path: str, template: str, headers: dict[str, str], *, count: int = 1000
) -> str:
    """A wrk script posting `template` with `$N` replaced by a rotating index 0..count-1 and
    `$UNIQ` by a value unique across threads, connections and runs."""
    head = {"Content-Type": "application/json", **headers}
    header_lua = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in head.items())
    pieces: list[str] = []
    marked = template.replace("$UNIQ", "\0U\0").replace("$N", "\0N\0")
    for i, chunk in enumerate(marked.split("\0")):
        if i % 2 == 0:
            pieces.append(_lua_string(chunk) if chunk else '""')
        else:
            pieces.append("uniq" if chunk == "U" else "tostring(counter % " + str(count) + ")")
    body = " .. ".join(pieces)
    return (
        f"""
local headers = {{ {header_lua} }}
local counter = 0
local prefix = ""
local uniq = ""
function init(args)
  local seed = os.time() + tonumber(tostring({{}}):sub(8), 16) % 1000003
  math.randomseed(seed)
  prefix = string.format("%x%x", math.random(0, 0xffffff), math.random(0, 0xffffff))
  counter = math.random(0, {count - 1})
end
function request()
  counter = counter + 1
  uniq = prefix .. "-" .. counter
  return wrk.format("POST", {_lua_string(path)}, headers, {body})
end
"""
        + DONE
    )


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_ms: float = 0.0  # server CPU time per request (all its processes)
    db_cpu_ms: float = 0.0  # PostgreSQL backend CPU time per request (this database's)
    quantiles_ms: tuple[float, ...] = ()  # the latency distribution (see QUANTILES)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx


def wrk(
    url: str,
    script: str,
    *,
    connections: int = 32,
    duration: float = DURATION,
    threads: int = 2,
    warmup: float = WARMUP,
    between: Callable[[], object] | None = None,
) -> LoadResult:
    """Run wrk with `script` (a warm-up first, not counted) and return its figures;
    `between` runs after the warm-up, before the measured run."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench` installs it (apt install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        path = handle.name
    try:
        if warmup > 0:
            _run_wrk(url, path, connections, warmup, threads)
        if between is not None:
            between()
        return _run_wrk(url, path, connections, duration, threads)
    finally:
        os.unlink(path)


def _run_wrk(url: str, path: str, connections: int, duration: float, threads: int) -> LoadResult:
    argv = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections),
            "-d", f"{max(1, round(duration))}s", "--timeout", "10s", "-s", path, url]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    quantiles = tuple(
        int(value) / 1000
        for line in lines
        if line.startswith("BENCH_QUANTILES ")
        for value in line.removeprefix("BENCH_QUANTILES ").split(",")
    )
    for line in lines:
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.removeprefix("BENCH_JSON "))
            return LoadResult(
                requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
                non2xx=raw["non2xx"], socket_errors=raw["socket_errors"],
                p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000, max_ms=raw["max_us"] / 1000,
                quantiles_ms=quantiles,
            )  # fmt: skip
    raise RuntimeError(f"wrk gave no figures:\n{done.stdout}\n{done.stderr}")


def _cpu_seconds(pids: Sequence[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _py_spy(server: Server, url: str, duration: float) -> subprocess.Popen[bytes]:
    """py-spy on the server for the measured run: a flame graph in BENCH_PROFILE_DIR."""
    py_spy = BIN / "py-spy"
    if not py_spy.exists():
        raise SystemExit("BENCH_PROFILE_DIR needs py-spy: .venv/bin/pip install py-spy")
    Path(PROFILE_DIR).mkdir(parents=True, exist_ok=True)
    name = url.split("//", 1)[1].split("/", 1)[1].replace("/", "_") or "root"
    raw = os.environ.get("BENCH_PROFILE_FORMAT") == "raw"  # collapsed stacks, for scripts
    out = Path(PROFILE_DIR) / f"{name}-{time.strftime('%H%M%S')}.{'txt' if raw else 'svg'}"
    print(f"profiling {server.name} into {out}", flush=True)
    argv = [str(py_spy), "record", "-p", str(server.process.pid), "-d", str(round(duration)),
            "-r", "200", "-o", str(out), "--nonblocking"]  # fmt: skip
    if raw:
        argv += ["-f", "raw"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _db_pids(database_url: str) -> list[int]:
    name = database_url.rsplit("/", 1)[1].split("?")[0]
    rows = sql(POSTGRES_ADMIN_URL, "SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    return [int(row["pid"]) for row in rows]


def measured(
    server: Server,
    database_url: str,
    url: str,
    script: str,
    *,
    connections: int = 32,
    duration: float = DURATION,
    warmup: float = WARMUP,
    between: Callable[[], object] | None = None,
    profile: bool = True,
) -> LoadResult:
    """wrk against `server`, with the CPU the server and the database spent per request
    (`profile`: py-spy on Opsgraph, if BENCH_PROFILE_DIR is set)."""
    marks: dict[str, float] = {}

    profiler: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        if between is not None:
            between()
        marks["server"] = _cpu_seconds(server.pids())
        marks["db"] = _cpu_seconds(_db_pids(database_url))
        if PROFILE_DIR and profile and server.name == "opsgraph":
            profiler.append(_py_spy(server, url, duration))

    result = wrk(
        url, script, connections=connections, duration=duration, warmup=warmup, between=start
    )
    for process in profiler:
        process.wait(timeout=60)
    server_cpu = _cpu_seconds(server.pids()) - marks["server"]
    db_cpu = _cpu_seconds(_db_pids(database_url)) - marks["db"]
    count = max(1, result.requests)
    return dataclasses.replace(
        result, server_cpu_ms=server_cpu * 1000 / count, db_cpu_ms=max(0.0, db_cpu) * 1000 / count
    )


# --- the baseline and Opsgraph, turn about -------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One server of a comparison: what to load it with, and the rows to count."""

    name: str
    server: Server
    path: str
    script: str
    durability: Durability | None = None


@dataclass(frozen=True)
class Comparison:
    rows: list[tuple[str, LoadResult]]  # each server's rounds pooled
    rounds: dict[str, list[LoadResult]]  # each server's rounds, in order

    def round_ratios(self, name: str = "opsgraph", baseline: str = "baseline") -> str:
        """A sentence: `name`'s req/s over the baseline's, round by round (how steady), and
        with `--against`, this tree's over the other tree's."""
        out = []
        for mine, theirs in [(name, baseline)] + [(name, AGAINST)] * (AGAINST in self.rounds):
            pairs = zip(self.rounds[mine], self.rounds[theirs], strict=True)
            ratios = ", ".join(f"{m.rate / t.rate:.2f}" for m, t in pairs if t.rate)
            whose = "the baseline's" if theirs == baseline else "the other tree's (--against)"
            out.append(f"Opsgraph's req/s over {whose}, round by round: {ratios}.")
        return "\n".join(out)


def alternate(
    contenders: Sequence[Contender],
    database_url: str,
    *,
    connections: int,
    duration: float,
    rounds: int = ROUNDS,
    against: Server | None = None,
) -> Comparison:
    """Load each contender in turn, `rounds` times (`duration` in all for each, a warm-up
    before its first round): this machine's speed drifts within minutes, and taking turns
    lets the baseline and Opsgraph share the drift instead of one of them catching it.
    `against` (another tree's Opsgraph) takes its turns with the "opsgraph" contender's
    load, last."""
    rounds = max(1, rounds)
    if against is not None:
        [ours] = [contender for contender in contenders if contender.name == "opsgraph"]
        other = dataclasses.replace(ours, name=AGAINST, server=against, durability=None)
        contenders = [*contenders, other]
    done: dict[str, list[LoadResult]] = {contender.name: [] for contender in contenders}
    for index in range(rounds):
        for contender in contenders:
            check = contender.durability
            result = measured(
                contender.server, database_url, contender.server.url + contender.path,
                contender.script, connections=connections, duration=duration / rounds,
                warmup=WARMUP if index == 0 else 0.0,
                between=check.start if check else None, profile=index == 0,
            )  # fmt: skip
            if check is not None:
                check.stop(result)
            done[contender.name].append(result)
    return Comparison([(name, pooled(results)) for name, results in done.items()], done)


def merged_percentile(results: Sequence[LoadResult], p: float) -> float:
    """The `p`th percentile of the runs' latencies together. Each run's quantiles stand
    for equal shares of its requests, each at the middle of its share (the i-th of n at
    (i + 0.5) / n); the percentile is interpolated between the two nearest."""
    points = sorted(
        (value, r.requests / len(r.quantiles_ms)) for r in results for value in r.quantiles_ms
    )
    total = sum(weight for _, weight in points)
    wanted = p / 100 * total
    seen = 0.0
    previous: tuple[float, float] | None = None  # (position, value)
    for value, weight in points:
        position = seen + weight / 2
        seen += weight
        if position >= wanted:
            if previous is None or position == previous[0]:
                return value
            share = (wanted - previous[0]) / (position - previous[0])
            return previous[1] + share * (value - previous[1])
        previous = (position, value)
    return points[-1][0]


def pooled(results: Sequence[LoadResult]) -> LoadResult:
    """Rounds as one run: requests, time and CPU summed, latency percentiles of the rounds'
    distributions merged (each quantile weighing its round's requests), the worst maximum."""
    requests = sum(r.requests for r in results)
    count = max(1, requests)

    def percentile(p: float, own: Callable[[LoadResult], float]) -> float:
        if len(results) == 1 or not all(r.quantiles_ms for r in results):
            return statistics.median(own(r) for r in results)
        return merged_percentile(results, p)

    return LoadResult(
        requests=requests,
        seconds=sum(r.seconds for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        p50_ms=percentile(50, lambda r: r.p50_ms),
        p90_ms=percentile(90, lambda r: r.p90_ms),
        p99_ms=percentile(99, lambda r: r.p99_ms),
        max_ms=max(r.max_ms for r in results),
        server_cpu_ms=sum(r.server_cpu_ms * r.requests for r in results) / count,
        db_cpu_ms=sum(r.db_cpu_ms * r.requests for r in results) / count,
    )


# --- reporting ----------------------------------------------------------------------


def table(
    title: str,
    rows: Sequence[tuple[str, LoadResult]],
    *,
    baseline: str = "baseline",
    target: str = "",
) -> str:
    """Rows of figures, each with its throughput and p99 relative to the baseline row."""
    base = dict(rows).get(baseline)
    out = [f"\n## {title}", "",
           "| server | req/s | p50 ms | p90 ms | p99 ms | errors | × base req/s "
           "| × base p99 | server CPU ms/req | DB CPU ms/req |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows:
        ratio = f"{r.rate / base.rate:.2f}" if base and base.rate else "–"
        p99 = f"{r.p99_ms / base.p99_ms:.2f}" if base and base.p99_ms else "–"
        out.append(
            f"| {name} | {r.rate:,.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.non2xx + r.socket_errors} | {ratio} | {p99} | {r.server_cpu_ms:.3f} "
            f"| {r.db_cpu_ms:.3f} |"
        )
    if target:
        out += ["", f"Target: {target}"]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def header(what: str, args: argparse.Namespace) -> None:
    workers = getattr(args, "workers", WORKERS)
    duration = getattr(args, "duration", DURATION)
    rounds = getattr(args, "rounds", ROUNDS)
    print(f"# {what}\n\nMachine: {machine()}\nDuration {duration:g}s per server in {rounds} "
          f"turns each (the baseline and Opsgraph alternating), after a {WARMUP:g}s warm-up; "
          f"server workers: {workers}.", flush=True)  # fmt: skip


def arguments(doc: str | None, *, against: bool = False) -> argparse.ArgumentParser:
    """The options every load script takes (`against`: and `--against TREE`)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds per run")
    parser.add_argument("--workers", type=int, default=WORKERS, help="server processes")
    if against:
        parser.add_argument(
            "--against",
            type=Path,
            help="another checkout (a git worktree) whose Opsgraph takes turns with this one's",
        )
    parser.add_argument(
        "--rounds",
        type=lambda text: max(1, int(text)),
        default=ROUNDS,
        help="turns each server takes (the duration split between them, whole seconds each)",
    )
    return parser


def create_key(database_url: str, scopes: str, name: str = "bench") -> str:
    """A new API key with `scopes`, made by the CLI."""
    env = base_env(database_url)
    return opsgraph_cli(env, "keys", "create", "--name", name, "--scopes", scopes)


@contextlib.contextmanager
def with_baseline(database_url: str, *, workers: int) -> Iterator[Server]:
    """The baseline's tables made, and the baseline serving, for a comparison."""
    from bench.baseline_app import SCHEMA

    sql_script(database_url, SCHEMA)
    with baseline_server(database_url, workers=workers) as server:
        yield server


class Durability:
    """Counts the rows a table gained during the measured run, to set against the 2xx."""

    def __init__(self, database_url: str, table: str) -> None:
        self.database_url = database_url
        self.table = table
        self.before = 0
        self.windows: list[tuple[int, int]] = []  # (answered 2xx, rows stored) per window

    def count(self) -> int:
        return int(sql(self.database_url, f"SELECT count(*) AS n FROM {self.table}")[0]["n"])

    def start(self) -> None:
        self.before = self.count()

    def stop(self, result: LoadResult) -> None:
        self.windows.append((result.ok, self.count() - self.before))

    def verdict(self) -> str:
        """Every window must have stored at least its 2xx answers (a window's surplus is
        requests in flight when wrk stopped: it must not hide another's shortfall)."""
        answered = sum(ok for ok, _ in self.windows)
        stored = sum(rows for _, rows in self.windows)
        short = [n for n, (ok, rows) in enumerate(self.windows, 1) if rows < ok]
        verdict = "ok in every window" if not short else f"MISSING ROWS in window {short}"
        return (f"Durability: {answered:,} answers 2xx, {stored:,} rows stored in "
                f"{self.table} over the measured windows ({verdict}).")  # fmt: skip
