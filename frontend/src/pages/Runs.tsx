import { useCallback } from "react";
import { Link, useSearchParams } from "react-router";
import { AGENT_KINDS, useRefreshOn } from "../api/refresh";
import { Status, Where } from "../components/Badges";
import { useKeptQuery } from "../api/kept";
import { useFromHere } from "../components/BackLink";
import { Empty, ErrorNote, KeptNote, Loading } from "../components/States";
import { ago, duration, fullDate, useNow } from "../format";
import { graphql } from "../gql";
import type { RunStatus } from "../gql/graphql";
import { useViewer } from "../viewer";
import { CALLS } from "./Run";
import { useTitle } from "../title";

const RunsDocument = graphql(`
  query Runs($filter: RunFilter, $first: Int, $calls: Int!) {
    runs(filter: $filter, first: $first) {
      nodes {
        id
        runId
        agentId
        status
        task
        model
        error
        service
        environment
        startedAt
        endedAt
        toolCalls(first: $calls) {
          id
          toolName
          status
          violation
        }
      }
      pageInfo {
        hasNextPage
      }
    }
  }
`);

const STATUSES: { value: RunStatus | ""; label: string }[] = [
  { value: "", label: "All" },
  { value: "RUNNING", label: "Running" },
  { value: "COMPLETED", label: "Completed" },
  { value: "FAILED", label: "Failed" },
];

const PAGE = 50;

export function RunsPage() {
  useTitle("Runs");
  const [params, setParams] = useSearchParams();
  // Read in either case, written in lower case, as the incidents' links are.
  const wanted = params.get("status")?.toUpperCase();
  const status = (STATUSES.find((s) => s.value === wanted)?.value ?? "") as RunStatus | "";
  const agent = params.get("agent")?.trim() ?? "";
  const viewer = useViewer();
  const from = useFromHere();
  const variables = {
    first: viewer.page(PAGE),
    calls: viewer.page(CALLS),
    filter: { statuses: status ? [status] : null, agentIds: agent ? [agent] : null },
  };
  const [{ data, error, fetching, kept }, refetch] = useKeptQuery({ query: RunsDocument, variables });
  const refresh = useCallback(() => refetch({ requestPolicy: "network-only" }), [refetch]);
  useRefreshOn({ kinds: [...AGENT_KINDS] }, refresh);
  const now = useNow(10_000);

  const set = (key: string, value: string): void => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    setParams(next, { replace: true });
  };
  const runs = data?.runs.nodes;

  return (
    <main className="page" id="main">
      <div className="page-head">
        <h1>Runs</h1>
        <p className="muted">
          What agents did: each run with its tool calls and the policy decisions on them.
        </p>
      </div>
      <div className="toolbar">
        <div className="tabs tabs-inline" role="tablist" aria-label="Run status">
          {STATUSES.map((s) => (
            <button
              key={s.label}
              type="button"
              role="tab"
              className="tab"
              aria-selected={s.value === status}
              onClick={() => set("status", s.value.toLowerCase())}
            >
              {s.label}
            </button>
          ))}
        </div>
        <form
          onSubmit={(event) => {
            event.preventDefault();
            const input = new FormData(event.currentTarget).get("agent");
            set("agent", typeof input === "string" ? input.trim() : "");
          }}
        >
          <label className="field field-inline">
            <span>Agent</span>
            <input
              key={agent}
              type="search"
              name="agent"
              placeholder="all"
              defaultValue={agent}
              onBlur={(event) => event.currentTarget.form?.requestSubmit()}
            />
          </label>
        </form>
      </div>
      {error && kept ? <KeptNote error={error} retry={refresh} /> : null}
      {error && !data ? (
        <ErrorNote error={error} retry={refresh} />
      ) : !runs ? (
        fetching ? (
          <Loading what="Loading runs" />
        ) : null
      ) : runs.length === 0 ? (
        <Empty title={status || agent ? "No run matches." : "No agent runs yet."}>
          <p>
            Agents report runs and tool calls with <code>POST /v1/events</code>.
          </p>
        </Empty>
      ) : (
        <ul className="run-list" aria-label="Runs">
          {runs.map((run) => {
            const violations = run.toolCalls.filter((call) => call.violation).length;
            const took =
              Date.parse(run.endedAt ?? new Date(Math.max(now, Date.now())).toISOString()) -
              Date.parse(run.startedAt);
            return (
              <li key={run.id}>
                <Link
                  to={`/runs/${run.id}`}
                  state={from}
                  className={`run-row${violations ? " run-row-violation" : ""}`}
                >
                  <span className="run-row-head">
                    <Status status={run.status} />
                    <strong className="run-agent">{run.agentId}</strong>
                    <span className="run-task">
                      {run.task ?? <span className="muted">no task given</span>}
                    </span>
                    {violations ? (
                      <span className="tag tag-violation">
                        {violations} policy {violations === 1 ? "violation" : "violations"}
                      </span>
                    ) : null}
                  </span>
                  <span className="run-row-meta">
                    <span title={fullDate(run.startedAt)}>started {ago(run.startedAt, now)}</span>
                    <span>{run.endedAt ? `took ${duration(took)}` : `running ${duration(took)}`}</span>
                    {run.model ? <span>{run.model}</span> : null}
                    <Where service={run.service} environment={run.environment} />
                    <span className="muted incident-key">{run.runId}</span>
                  </span>
                  {run.toolCalls.length ? (
                    <span className="run-calls" aria-label="Tool calls">
                      {run.toolCalls.map((call) => (
                        <span
                          key={call.id}
                          className={`call-pill call-${call.status.toLowerCase().replace(/_/g, "-")}${call.violation ? " call-violation" : ""}`}
                          title={`${call.toolName}: ${call.status.toLowerCase().replace(/_/g, " ")}${call.violation ? ` (violation: ${call.violation})` : ""}`}
                        >
                          {call.toolName}
                        </span>
                      ))}
                    </span>
                  ) : null}
                  {run.error ? <span className="run-error">{run.error}</span> : null}
                </Link>
              </li>
            );
          })}
        </ul>
      )}
      {data?.runs.pageInfo.hasNextPage ? (
        <p className="muted end">
          The newest {PAGE} runs are shown; filter by agent or status to see others.
        </p>
      ) : null}
    </main>
  );
}
