"""Benchmark 5: the timeline's first page of 50, filtered by service and label, with
1,000,000 entries stored, beside the baseline (the same filter as one hand-written SELECT
through asyncpg in a bare Starlette endpoint).

The rows go straight into PostgreSQL (INSERT ... SELECT generate_series): 20 services,
50 labels, 2 labels per entry, so one service and one label match about 0.2% of entries.
Usage: .venv/bin/python -m bench.timeline_query [--entries 1000000] [--connections 1]
"""

from __future__ import annotations

import json
import time

import httpx

from bench import harness

SERVICES = 20
LABELS = 50
TARGET = "p99 under 20 ms for the first page of 50."

QUERY = """query($service: String!, $label: String!) {
  timeline(filter: {services: [$service], labels: [$label]}, first: 50) {
    edges { cursor node { id kind occurredAt summary service environment labels actor } }
    pageInfo { hasNextPage endCursor }
  }
}"""

LOAD = """
INSERT INTO timeline_entry (workspace_id, seq, kind, occurred_at, summary, service,
                            environment, labels, actor, details, created_at)
SELECT $1, g, 'CHANGE', now() - ($2 - g) * interval '3 seconds', 'Deploy build ' || g,
       'svc-' || abs(hashint4(g) % {services}), 'prod',
       jsonb_build_array('label-' || abs(hashint4(g + 7777777) % {labels}),
                         'label-' || abs(hashint4(g + 9999999) % {labels})),
       'bench', '{{"category": "TECHNICAL", "source": "bench"}}'::jsonb, now()
FROM generate_series(1, $2) AS g
"""
LABEL_ROWS = """
INSERT INTO timeline_label (entry_id, workspace_id, label)
SELECT DISTINCT e.id, e.workspace_id, l.value
FROM timeline_entry e, jsonb_array_elements_text(e.labels) AS l(value)
"""


def load(database_url: str, entries: int) -> float:
    """Bulk-load `entries` timeline entries and their label rows; seconds taken."""
    started = time.monotonic()
    workspace = harness.sql(database_url, "SELECT id FROM workspace ORDER BY created_at LIMIT 1")
    workspace_id = workspace[0]["id"]
    harness.sql(database_url, LOAD.format(services=SERVICES, labels=LABELS), workspace_id, entries)
    harness.sql(database_url, LABEL_ROWS)
    harness.sql(
        database_url, "UPDATE workspace SET timeline_seq = $2 WHERE id = $1", workspace_id, entries
    )
    for statement in ("VACUUM ANALYZE timeline_entry", "VACUUM ANALYZE timeline_label"):
        harness.sql_script(database_url, statement)
    return time.monotonic() - started


def run(
    *, entries: int, connections: int, duration: float, workers: int, rounds: int = harness.ROUNDS
) -> str:
    with harness.throwaway_database() as database_url:
        harness.opsgraph_cli(harness.base_env(database_url), "migrate")
        seconds = load(database_url, entries)
        print(f"Loaded {entries:,} entries in {seconds:.0f}s.", flush=True)
        workspace_id = harness.sql(database_url, "SELECT id FROM workspace LIMIT 1")[0]["id"]
        baseline_body = json.dumps(
            {"workspace": workspace_id, "service": "svc-$N", "label": "label-7"}
        )
        with (
            harness.with_baseline(database_url, workers=workers) as baseline,
            harness.opsgraph_server(database_url, workers=workers) as (server, _admin),
        ):
            key = harness.create_key(database_url, "read", name="reader")
            body = json.dumps(
                {"query": QUERY, "variables": {"service": "svc-$N", "label": "label-7"}}
            )
            page = httpx.post(
                server.url + "/graphql",
                content=body.replace("$N", "3"),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            ).json()
            if page.get("errors"):
                raise RuntimeError(f"timeline query failed: {page['errors']}")
            found = len(page["data"]["timeline"]["edges"])
            compared = harness.alternate(
                [
                    harness.Contender("baseline", baseline, "/timeline",
                                      harness.lua_post_template("/timeline", baseline_body, {},
                                                                count=SERVICES)),
                    harness.Contender("opsgraph", server, "/graphql",
                                      harness.lua_post_template(
                                          "/graphql", body, {"Authorization": f"Bearer {key}"},
                                          count=SERVICES)),
                ],
                database_url, connections=connections, duration=duration, rounds=rounds,
            )  # fmt: skip
    text = harness.table(
        f"Timeline query: first page of 50 by service and label, {entries:,} entries, "
        f"{connections} connection(s)",
        compared.rows,
        target=TARGET,
    )
    note = f"Each page held {found} entries (a full page is 50)."
    print(note, flush=True)
    return f"{text}\n\n{note}"


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.set_defaults(connections=1)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    harness.header("Timeline query benchmark", args)
    run(entries=args.entries, connections=args.connections, duration=args.duration,
        workers=args.workers, rounds=args.rounds)  # fmt: skip


if __name__ == "__main__":
    main()
