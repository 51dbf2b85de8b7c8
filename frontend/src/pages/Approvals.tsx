import { useEffect, useRef, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { useMutation, useQuery } from "urql";
import { useApprovals, type Approval, type Settled } from "../api/approvals";
import { AgentContext, MatchedPolicies } from "../components/Agent";
import { Chip, Status } from "../components/Badges";
import { JsonView } from "../components/JsonView";
import { NoteDialog } from "../components/NoteDialog";
import { Empty, ErrorNote, Loading, errorMessage } from "../components/States";
import { ago, fullDate, timeLeft, useNow } from "../format";
import { graphql } from "../gql";
import type { ApprovalDecision } from "../gql/graphql";
import { useViewer } from "../viewer";
import { useTitle } from "../title";

const DecideDocument = graphql(`
  mutation DecideApproval($id: ID!, $decision: ApprovalDecision!, $comment: String) {
    decideApproval(id: $id, decision: $decision, comment: $comment) {
      ...ApprovalFields
    }
  }
`);

const OneApprovalDocument = graphql(`
  query OneApproval($id: ID!) {
    approval(id: $id) {
      ...ApprovalFields
    }
  }
`);

const RecentDocument = graphql(`
  query RecentApprovals($first: Int!) {
    approvals(first: $first) {
      nodes {
        id
        status
        decidedAt
        decidedBy
        comment
        requestedAt
        toolCall {
          toolName
          agentId
        }
      }
    }
  }
`);

function ApprovalCard({
  approval,
  focused,
  now,
  canDecide,
  onDecide,
}: {
  approval: Approval;
  focused: boolean;
  now: number;
  canDecide: boolean;
  onDecide: (approval: Approval, decision: ApprovalDecision) => void;
}) {
  const ref = useRef<HTMLElement>(null);
  useEffect(() => {
    if (!focused) return;
    ref.current?.scrollIntoView({ block: "center", behavior: "smooth" });
    ref.current?.focus({ preventScroll: true });
  }, [focused]);
  const left = timeLeft(approval.expiresAt, now);
  const call = approval.toolCall;
  const titleId = `approval-title-${approval.id}`;
  return (
    <article
      ref={ref}
      id={`approval-${approval.id}`}
      className={`approval${focused ? " approval-focused" : ""}${left.over ? " approval-over" : ""}`}
      aria-labelledby={titleId}
      data-approval-id={approval.id}
      tabIndex={focused ? -1 : undefined}
    >
      <header className="approval-head">
        <div>
          {focused ? <span className="tag tag-focus">Linked approval</span> : null}
          <h2 id={titleId}>
            <code>{call.toolName}</code>
            {call.actionHint ? <Chip value={call.actionHint} /> : null}
          </h2>
          <p className="muted approval-who">
            Agent <strong>{call.agentId}</strong>
            {approval.run.task ? <> · {approval.run.task}</> : null} ·{" "}
            <Link to={`/runs/${approval.run.id}`}>run {approval.run.runId}</Link>
            {call.service ? <> · {call.service}</> : null}
            {call.environment ? <> · {call.environment}</> : null}
          </p>
          {approval.run.status !== "RUNNING" ? (
            <p className="run-ended">
              This run already {approval.run.status === "FAILED" ? "failed" : "completed"}: the agent may no
              longer be waiting for the answer.
            </p>
          ) : null}
        </div>
        <span
          className={`countdown${left.urgent ? " countdown-urgent" : ""}`}
          title={`Expires ${fullDate(approval.expiresAt)}; expiry never approves`}
        >
          {left.text}
        </span>
      </header>
      <p className="approval-reason">{approval.reason}</p>
      <div className="approval-grid">
        <section>
          <h3>Input</h3>
          <JsonView value={call.inputPayload} label="Tool input" />
        </section>
        <section>
          <h3>The agent says</h3>
          <AgentContext
            context={
              call.agentContext && Object.keys(call.agentContext as object).length
                ? call.agentContext
                : approval.run.agentContext
            }
            reason={call.reason}
          />
          <h3>Matched policies</h3>
          <MatchedPolicies policies={call.matchedPolicies} />
        </section>
      </div>
      <footer className="approval-actions">
        <span className="muted">Requested {ago(approval.requestedAt, now)}</span>
        <button
          type="button"
          className="button button-danger"
          disabled={!canDecide || left.over}
          title={canDecide ? undefined : "Needs a key with the approvals:decide scope"}
          onClick={() => onDecide(approval, "REJECT")}
        >
          Reject…
        </button>
        <button
          type="button"
          className="button button-success"
          disabled={!canDecide || left.over}
          title={canDecide ? undefined : "Needs a key with the approvals:decide scope"}
          onClick={() => onDecide(approval, "APPROVE")}
        >
          Approve…
        </button>
      </footer>
    </article>
  );
}

/** What happened to a linked approval that is no longer in the queue. */
function FocusOutcome({ id, now }: { id: string; now: number }) {
  const [{ data, error, fetching }] = useQuery({ query: OneApprovalDocument, variables: { id } });
  if (fetching && !data) return <Loading what="Looking up the linked approval" />;
  if (error) return <ErrorNote error={error} />;
  const approval = data?.approval;
  if (!approval) {
    return (
      <div className="notice" role="status">
        No approval <code>{id}</code> in this workspace.
      </div>
    );
  }
  if (approval.status === "PENDING") return null;
  return (
    <div className="notice focus-outcome" role="status" data-approval-id={approval.id}>
      The linked approval (<code>{approval.toolCall.toolName}</code> for {approval.toolCall.agentId}) is
      already <Status status={approval.status} />
      {approval.decidedBy ? <> by {approval.decidedBy}</> : null}
      {approval.decidedAt ? <> {ago(approval.decidedAt, now)}</> : null}
      {approval.comment ? <>: “{approval.comment}”</> : null}.
    </div>
  );
}

/** What became of the approval `id` while its decision dialog was open (a colleague, the
 * clock), or null while it still waits. */
function settledMeanwhile(
  id: string,
  queue: { pending: Approval[]; settled: Settled[]; ready: boolean },
  now: number,
): string | null {
  const approval = queue.settled.find((s) => s.approval.id === id)?.approval;
  if (!approval) {
    // Gone from the queue without the event (read again after a reconnection).
    const gone = queue.ready && !queue.pending.some((a) => a.id === id);
    return gone ? "Meanwhile it was decided or expired: there is nothing left to decide." : null;
  }
  if (approval.status === "EXPIRED") {
    return "Meanwhile it expired, or its tool call ended, without a decision: there is nothing left to decide.";
  }
  const by = approval.decidedBy ? ` by ${approval.decidedBy}` : "";
  const when = approval.decidedAt ? ` ${ago(approval.decidedAt, now)}` : "";
  const said = approval.comment ? `: “${approval.comment}”` : "";
  return `Meanwhile it was ${approval.status.toLowerCase()}${by}${when}${said}. There is nothing left to decide.`;
}

function Recent({ now }: { now: number }) {
  const { settled } = useApprovals();
  const first = useViewer().page(30);
  const [{ data }, refetch] = useQuery({ query: RecentDocument, variables: { first } });
  const count = settled.length;
  useEffect(() => {
    if (count) refetch({ requestPolicy: "network-only" });
  }, [count, refetch]);
  const decided = (data?.approvals.nodes ?? []).filter((a) => a.status !== "PENDING").slice(0, 10);
  if (!decided.length) return null;
  return (
    <section className="section" aria-labelledby="recent-title">
      <h2 id="recent-title">Recently decided</h2>
      <ul className="recent">
        {decided.map((a) => (
          <li key={a.id} data-approval-id={a.id}>
            <Status status={a.status} /> <code>{a.toolCall.toolName}</code>{" "}
            <span className="muted">
              for {a.toolCall.agentId}
              {a.decidedBy ? ` · by ${a.decidedBy}` : ""}
              {a.decidedAt ? ` · ${ago(a.decidedAt, now)}` : ""}
            </span>
            {a.comment ? <span className="recent-comment">“{a.comment}”</span> : null}
          </li>
        ))}
      </ul>
    </section>
  );
}

export function ApprovalsPage() {
  useTitle("Approvals");
  const { pending, ready, problem, settle, settled } = useApprovals();
  const [params] = useSearchParams();
  const focus = params.get("focus");
  const viewer = useViewer();
  const now = useNow(1_000);
  const [deciding, setDeciding] = useState<{ approval: Approval; decision: ApprovalDecision } | null>(null);
  const [decision, decide] = useMutation(DecideDocument);
  const [decideError, setDecideError] = useState<string | null>(null);
  const [decideFinal, setDecideFinal] = useState(false);
  const focusedPending = focus ? pending.some((a) => a.id === focus) : false;
  // Approvals this page is sending a decision for: their end is told by the answer.
  const sent = useRef(new Set<string>());
  const decidingId = deciding?.approval.id;
  const settledNote =
    decidingId === undefined || sent.current.has(decidingId)
      ? null
      : settledMeanwhile(decidingId, { pending, settled, ready }, now);

  const submit = async (comment: string): Promise<void> => {
    if (!deciding) return;
    sent.current.add(deciding.approval.id);
    const result = await decide({
      id: deciding.approval.id,
      decision: deciding.decision,
      comment: comment || null,
    });
    if (!result.data) sent.current.delete(deciding.approval.id); // a colleague's end shows again
    setDecideError(result.error ? errorMessage(result.error) : null);
    // Decided meanwhile (another tab, a colleague) or expired: final, nothing to retry.
    setDecideFinal(result.error?.graphQLErrors.some((e) => e.extensions?.code === "CONFLICT") ?? false);
    if (result.data) {
      // The decided card leaves the queue: the keyboard goes on to the next one (or the
      // one before it, or the heading), not back to the top of the page.
      const index = pending.findIndex((a) => a.id === deciding.approval.id);
      const rest = pending.filter((a) => a.id !== deciding.approval.id);
      focusAfter.current = rest[Math.min(Math.max(index, 0), rest.length - 1)]?.id ?? "";
      settle(result.data.decideApproval);
      setDeciding(null);
    }
  };

  const focusAfter = useRef<string | null>(null); // where focus goes once a decision is made
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    const next = focusAfter.current;
    if (next === null || deciding !== null) return;
    focusAfter.current = null;
    const button = document.querySelector<HTMLElement>(`article[data-approval-id='${next}'] button`);
    (button ?? heading.current)?.focus();
  }, [deciding, pending]);

  return (
    <main className="page" id="main">
      <div className="page-head">
        <h1 ref={heading} tabIndex={-1}>
          Approvals
        </h1>
        <p className="muted">
          Tool calls held by a policy until a person decides. The agent is waiting; expiry never approves.
        </p>
      </div>
      {problem ? <ErrorNote error={`Live updates stopped: ${problem}`} /> : null}
      {focus && ready && !focusedPending ? <FocusOutcome id={focus} now={now} /> : null}
      {!ready ? (
        <Loading what="Loading pending approvals" />
      ) : pending.length === 0 ? (
        <Empty title="No tool call is waiting for approval.">
          <p>New requests appear here the moment an agent's call matches a require-approval policy.</p>
        </Empty>
      ) : (
        <div className="approvals" aria-live="polite" aria-label="Pending approvals">
          {pending.map((approval) => (
            <ApprovalCard
              key={approval.id}
              approval={approval}
              focused={approval.id === focus}
              now={now}
              canDecide={viewer.can("APPROVALS_DECIDE")}
              onDecide={(a, d) => {
                setDecideError(null);
                setDecideFinal(false);
                setDeciding({ approval: a, decision: d });
              }}
            />
          ))}
        </div>
      )}
      <Recent now={now} />
      <NoteDialog
        open={deciding !== null}
        title={
          deciding
            ? `${deciding.decision === "APPROVE" ? "Approve" : "Reject"} ${deciding.approval.toolCall.toolName}?`
            : ""
        }
        description={
          deciding?.decision === "APPROVE"
            ? `The agent ${deciding.approval.toolCall.agentId} goes ahead with this call.`
            : deciding
              ? `The agent ${deciding.approval.toolCall.agentId} is told no, with your comment.`
              : undefined
        }
        confirm={deciding?.decision === "APPROVE" ? "Approve" : "Reject"}
        tone={deciding?.decision === "APPROVE" ? "success" : "danger"}
        required={deciding?.decision === "REJECT"}
        missingHint="Say why, so the agent and your colleagues know."
        placeholder={deciding?.decision === "REJECT" ? "Why not? The agent reads this." : "Optional"}
        busy={decision.fetching}
        error={settledNote ?? decideError}
        settled={decideFinal || settledNote !== null}
        onSubmit={(comment) => void submit(comment)}
        onClose={() => setDeciding(null)}
      />
    </main>
  );
}
