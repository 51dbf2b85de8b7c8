"""The baseline every benchmark prints beside Opsgraph: the floor of this stack.

A bare Starlette app under uvicorn (same worker count as Opsgraph) that parses the JSON
body and runs ONE asyncpg statement per request: an INSERT of the event for the write
endpoints, the equivalent SQL for the timeline query. No auth, no validation, no GraphQL.
Run: `python -m uvicorn bench.baseline_app:app` with BENCH_BASELINE_DATABASE_URL set.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_event (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    category VARCHAR(16) NOT NULL,
    source VARCHAR(200) NOT NULL,
    environment VARCHAR(200),
    service VARCHAR(200),
    labels JSONB NOT NULL,
    metadata JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS baseline_raw (
    id BIGSERIAL PRIMARY KEY,
    path VARCHAR(40) NOT NULL,
    body JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

INSERT = """
INSERT INTO baseline_event (name, occurred_at, category, source, environment, service,
                            labels, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id
"""

TIMELINE = """
SELECT e.* FROM timeline_entry e
WHERE e.workspace_id = $1 AND e.service = $2
  AND EXISTS (SELECT 1 FROM timeline_label l
              WHERE l.entry_id = e.id AND l.workspace_id = $1 AND l.label = $3)
ORDER BY e.occurred_at DESC, e.id DESC LIMIT 51
"""

pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(
        os.environ["BENCH_BASELINE_DATABASE_URL"],
        server_settings={"max_parallel_workers_per_gather": "0"},  # as Opsgraph sets it
    )
    try:
        yield
    finally:
        await pool.close()


async def events(request: Request) -> Response:
    """One INSERT of the posted event, like Opsgraph's `POST /events` stores it."""
    body = json.loads(await request.body())
    assert pool is not None
    new_id = await pool.fetchval(
        INSERT,
        body["name"],
        datetime.fromisoformat(body["timestamp"]),
        body["category"],
        body["source"],
        body.get("environment"),
        body.get("service"),
        json.dumps(body.get("labels", [])),
        json.dumps(body.get("metadata", {})),
    )
    return JSONResponse({"id": str(new_id), "status": "created"}, status_code=201)


async def raw_event(request: Request) -> Response:
    """One INSERT of any other posted event (incident or agent event) as JSONB."""
    body = json.loads(await request.body())
    assert pool is not None
    new_id = await pool.fetchval(
        "INSERT INTO baseline_raw (path, body) VALUES ($1, $2) RETURNING id",
        request.url.path,
        json.dumps(body),
    )
    return JSONResponse({"id": str(new_id), "status": "success"}, status_code=202)


async def timeline(request: Request) -> Response:
    """The first page of a service + label filtered timeline, one SELECT."""
    body = json.loads(await request.body())
    assert pool is not None
    rows = await pool.fetch(TIMELINE, body["workspace"], body["service"], body["label"])
    page = [
        {"id": str(r["id"]), "summary": r["summary"], "occurredAt": r["occurred_at"].isoformat()}
        for r in rows[:50]
    ]
    return JSONResponse({"edges": page, "hasNextPage": len(rows) > 50})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/events", events, methods=["POST"]),
        Route("/api/events", raw_event, methods=["POST"]),
        Route("/v1/events", raw_event, methods=["POST"]),
        Route("/timeline", timeline, methods=["POST"]),
        Route("/healthz", health),
    ],
    lifespan=lifespan,
)
