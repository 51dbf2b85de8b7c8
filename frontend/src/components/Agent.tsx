// Pieces shared by the Runs and Approvals pages: matched policies and the agent's context.
import { Link } from "react-router";
import { humanize } from "../format";
import { JsonView } from "./JsonView";

export interface MatchedPolicyView {
  policyId: string;
  policyName: string;
  action: string;
  reason: string;
  version: number;
  dryRun: boolean;
}

export function ActionBadge({ action }: { action: string }) {
  return (
    <span className={`action action-${action.toLowerCase().replace(/_/g, "-")}`} data-action={action}>
      {humanize(action)}
    </span>
  );
}

export function MatchedPolicies({ policies }: { policies: MatchedPolicyView[] }) {
  if (!policies.length) return <p className="muted">No policy matched: allowed by default.</p>;
  return (
    <ul className="matched">
      {policies.map((policy) => (
        <li key={`${policy.policyId}@${policy.version}`}>
          <ActionBadge action={policy.action} />{" "}
          <Link to={`/policies#${policy.policyId}`}>{policy.policyName}</Link>{" "}
          <span className="muted">v{policy.version}</span>
          {policy.dryRun ? <span className="tag tag-dry">dry run: not enforced</span> : null}
          <div className="matched-reason">{policy.reason}</div>
        </li>
      ))}
    </ul>
  );
}

function text(value: unknown): string | null {
  return typeof value === "string" && value.trim() ? value : null;
}

/** The agent's goal and reasoning (`agentContext`), and its stated reason for this step. */
export function AgentContext({
  context,
  reason,
  reasonLabel = "Reason for this call",
}: {
  context: unknown;
  reason?: string | null;
  reasonLabel?: string;
}) {
  const record = (context && typeof context === "object" ? context : {}) as Record<string, unknown>;
  const goal = text(record.goal);
  const reasoning = text(record.reasoning);
  const rest = Object.fromEntries(
    Object.entries(record).filter(([key]) => key !== "goal" && key !== "reasoning"),
  );
  if (!goal && !reasoning && !reason && !Object.keys(rest).length) {
    return <p className="muted">The agent gave no goal or reasoning.</p>;
  }
  return (
    <dl className="context">
      {goal ? (
        <>
          <dt>Goal</dt>
          <dd>{goal}</dd>
        </>
      ) : null}
      {reasoning ? (
        <>
          <dt>Reasoning</dt>
          <dd>{reasoning}</dd>
        </>
      ) : null}
      {reason ? (
        <>
          <dt>{reasonLabel}</dt>
          <dd>{reason}</dd>
        </>
      ) : null}
      {Object.keys(rest).length ? (
        <>
          <dt>Other context</dt>
          <dd>
            <JsonView value={rest} label="Agent context" />
          </dd>
        </>
      ) : null}
    </dl>
  );
}
