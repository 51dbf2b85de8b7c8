"""Every benchmark in turn (what `make bench` runs); the tables also go to bench/latest.md.

Usage: .venv/bin/python -m bench.all [--duration 15] [--workers 1] [--quick]
`--quick` runs shorter and smaller (100,000 timeline entries, 1,000 subscribers).
"""

from __future__ import annotations

import datetime
import shlex
import sys
from pathlib import Path

from bench import agents, fanout, harness, incidents, ingest, timeline_query

OUT = Path(__file__).resolve().parent / "latest.md"


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 5000, 10000])
    args = parser.parse_args()
    duration = args.duration = min(args.duration, 5.0) if args.quick else args.duration
    harness.header("Opsgraph benchmarks", args)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m bench.all " + shlex.join(sys.argv[1:])
    parts = [
        "# Latest benchmark run",
        "",
        f"{when}, `{command.strip()}`",
        f"Machine: {harness.machine()}; server workers: {args.workers}; "
        f"{duration:g}s per server in {args.rounds} turns each, after a "
        f"{harness.WARMUP:g}s warm-up.",
    ]
    load = {
        "connections": args.connections,
        "duration": duration,
        "workers": args.workers,
        "rounds": args.rounds,
    }
    parts.append(ingest.run(**load))
    parts.append(agents.run(**load))
    parts.append(incidents.run(**load))
    parts.append(
        fanout.run(
            subscribers=[1000] if args.quick else args.subscribers,
            rate=20.0,
            duration=duration,
            procs=2,
        )
    )
    parts.append(
        timeline_query.run(
            entries=100_000 if args.quick else 1_000_000,
            connections=1,
            duration=duration,
            workers=args.workers,
            rounds=args.rounds,
        )
    )
    OUT.write_text("\n".join(parts) + "\n")
    print(f"\nWrote {OUT}", flush=True)


if __name__ == "__main__":
    main()
