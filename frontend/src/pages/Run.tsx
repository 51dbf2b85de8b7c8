import { useCallback } from "react";
import { Link, useParams } from "react-router";
import { AGENT_KINDS, useRefreshOn } from "../api/refresh";
import { AgentContext, MatchedPolicies } from "../components/Agent";
import { Chip, Status, Where } from "../components/Badges";
import { JsonView } from "../components/JsonView";
import { useKeptQuery } from "../api/kept";
import { BackLink } from "../components/BackLink";
import { Empty, ErrorNote, KeptNote, Loading } from "../components/States";
import { ago, clock, duration, fullDate, humanize, useNow } from "../format";
import { graphql } from "../gql";
import type { RunQuery } from "../gql/graphql";
import { useViewer } from "../viewer";
import { useTitle } from "../title";

/** The calls the query asks for: the run's latest, a page as large as the server's default
 * largest (less where the server takes less). */
export const CALLS = 200;

const RunDocument = graphql(`
  query Run($id: ID!, $calls: Int!) {
    run(id: $id) {
      id
      runId
      agentId
      status
      task
      model
      reason
      agentContext
      error
      service
      environment
      startedAt
      endedAt
      toolCalls(first: $calls) {
        id
        toolCallId
        toolName
        actionHint
        inputPayload
        outputPayload
        reason
        agentContext
        service
        environment
        decision
        decisionReason
        status
        violation
        error
        calledAt
        endedAt
        matchedPolicies {
          policyId
          policyName
          action
          reason
          version
          dryRun
        }
        approval {
          id
          status
          decidedBy
          decidedAt
          comment
          expiresAt
        }
      }
    }
  }
`);

type ToolCall = NonNullable<RunQuery["run"]>["toolCalls"][number];

function ToolCallCard({ call, index, now }: { call: ToolCall; index: number; now: number }) {
  const took = call.endedAt ? Date.parse(call.endedAt) - Date.parse(call.calledAt) : null;
  const hasContext = call.reason || (call.agentContext && Object.keys(call.agentContext as object).length);
  return (
    <li
      className={`call${call.violation ? " call-card-violation" : ""}`}
      id={`call-${call.toolCallId}`}
      data-tool-call-id={call.toolCallId}
    >
      <header className="call-head">
        <span className="call-index">#{index + 1}</span>
        <code className="call-name">{call.toolName}</code>
        {call.actionHint ? <Chip value={call.actionHint} /> : null}
        <Status status={call.status} />
        <span className="muted call-time" title={fullDate(call.calledAt)}>
          {clock(call.calledAt, now)}
          {took !== null ? ` · ${duration(took)}` : ""}
        </span>
      </header>
      {call.violation ? (
        <p className="violation" role="note">
          <strong>Policy violation:</strong> {call.violation}
        </p>
      ) : null}
      <p className="call-decision">
        <span className="muted">Decision:</span> {humanize(call.decision)} — {call.decisionReason}
      </p>
      {call.approval ? (
        <p className="call-approval">
          <span className="muted">Approval:</span> <Status status={call.approval.status} />
          {call.approval.decidedBy ? ` by ${call.approval.decidedBy}` : ""}
          {call.approval.decidedAt ? ` ${ago(call.approval.decidedAt, now)}` : ""}
          {call.approval.comment ? ` — “${call.approval.comment}”` : ""}
          {call.approval.status === "PENDING" ? (
            <>
              {" "}
              <Link to={`/approvals?focus=${call.approval.id}`}>Decide it →</Link>
            </>
          ) : null}
        </p>
      ) : null}
      {call.error ? <p className="run-error">{call.error}</p> : null}
      <div className="call-grid">
        <section>
          <h3>Input</h3>
          <JsonView value={call.inputPayload} label={`${call.toolName} input`} />
        </section>
        <section>
          <h3>Output</h3>
          {call.outputPayload === null || call.outputPayload === undefined ? (
            <p className="muted">{call.endedAt ? "No output." : "Not completed."}</p>
          ) : (
            <JsonView value={call.outputPayload} label={`${call.toolName} output`} />
          )}
        </section>
      </div>
      {call.matchedPolicies.length ? (
        <section className="call-policies">
          <h3>Matched policies</h3>
          <MatchedPolicies policies={call.matchedPolicies} />
        </section>
      ) : null}
      {hasContext ? (
        <details className="call-more">
          <summary>The agent's reasoning</summary>
          <AgentContext context={call.agentContext} reason={call.reason} />
        </details>
      ) : null}
    </li>
  );
}

export function RunPage() {
  const { id = "" } = useParams();
  const calls = useViewer().page(CALLS);
  const variables = { id, calls };
  const [{ data, error, fetching, kept }, refetch] = useKeptQuery({ query: RunDocument, variables });
  const refresh = useCallback(() => refetch({ requestPolicy: "network-only" }), [refetch]);
  useRefreshOn({ kinds: [...AGENT_KINDS] }, refresh);
  const now = useNow(5_000);
  const run = data?.run;
  useTitle(run ? (run.task ?? run.runId) : "Run");

  if (!run) {
    return (
      <main className="page" id="main">
        <p className="crumbs">
          <BackLink to="/runs" label="Runs" />
        </p>
        {error ? (
          <ErrorNote error={error} retry={refresh} />
        ) : fetching || !data ? (
          <Loading what="Loading the run" />
        ) : (
          <Empty title="No such run in this workspace." />
        )}
      </main>
    );
  }
  const violations = run.toolCalls.filter((call) => call.violation).length;
  const took =
    Date.parse(run.endedAt ?? new Date(Math.max(now, Date.now())).toISOString()) - Date.parse(run.startedAt);

  return (
    <main className="page" id="main">
      <p className="crumbs">
        <BackLink to="/runs" label="Runs" />
      </p>
      {error && kept ? <KeptNote error={error} retry={refresh} /> : null}
      <header className={`run-head${violations ? " run-row-violation" : ""}`}>
        <div className="badges">
          <Status status={run.status} />
          {violations ? (
            <span className="tag tag-violation">
              {violations} policy {violations === 1 ? "violation" : "violations"}
            </span>
          ) : null}
          <Where service={run.service} environment={run.environment} />
        </div>
        <h1>{run.task ?? run.runId}</h1>
        <p className="muted">
          Agent <strong>{run.agentId}</strong>
          {run.model ? ` · ${run.model}` : ""} · started {ago(run.startedAt, now)} ·{" "}
          {run.endedAt ? `took ${duration(took)}` : `running for ${duration(took)}`} ·{" "}
          <code>{run.runId}</code>
        </p>
        {run.error ? <p className="run-error">{run.error}</p> : null}
        {run.reason || (run.agentContext && Object.keys(run.agentContext as object).length) ? (
          <AgentContext context={run.agentContext} reason={run.reason} reasonLabel="Reason for the run" />
        ) : null}
      </header>
      <section className="section" aria-labelledby="calls-title">
        <h2 id="calls-title">Tool calls ({run.toolCalls.length})</h2>
        {run.toolCalls.length ? (
          <ol className="calls">
            {run.toolCalls.map((call, index) => (
              <ToolCallCard key={call.id} call={call} index={index} now={now} />
            ))}
          </ol>
        ) : (
          <Empty title="No tool calls yet." />
        )}
        {run.toolCalls.length >= calls ? (
          <p className="muted">
            The run&apos;s latest {calls} calls are listed; earlier ones, if any, are not.
          </p>
        ) : null}
      </section>
    </main>
  );
}
