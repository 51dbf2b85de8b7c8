import { useEffect, useState, type FormEvent } from "react";
import { useLocation } from "react-router";
import { useClient, useMutation, useQuery, type CombinedError } from "urql";
import { errorCodes } from "../api/client";
import { ActionBadge } from "../components/Agent";
import { Dialog } from "../components/Dialog";
import { Empty, ErrorNote, Loading, errorMessage } from "../components/States";
import { ago, fullDate, useNow } from "../format";
import { graphql } from "../gql";
import type { MatchOp, PolicyAction, PolicyFieldsFragment, PolicyInput } from "../gql/graphql";
import { useViewer } from "../viewer";
import { useTitle } from "../title";

graphql(`
  fragment PolicyFields on Policy {
    id
    name
    description
    action
    toolName
    actionHint
    agentId
    inputMatches {
      path
      op
      value
    }
    incidentOpenOnServiceFrom
    dryRun
    version
    createdBy
    updatedBy
    createdAt
    updatedAt
  }
`);

const PoliciesDocument = graphql(`
  query Policies {
    policies {
      ...PolicyFields
    }
  }
`);

const CreateDocument = graphql(`
  mutation CreatePolicy($input: PolicyInput!) {
    createPolicy(input: $input) {
      ...PolicyFields
    }
  }
`);

const UpdateDocument = graphql(`
  mutation UpdatePolicy($id: ID!, $input: PolicyInput!, $expectedVersion: Int) {
    updatePolicy(id: $id, input: $input, expectedVersion: $expectedVersion) {
      ...PolicyFields
    }
  }
`);

const DeleteDocument = graphql(`
  mutation DeletePolicy($id: ID!) {
    deletePolicy(id: $id)
  }
`);

type Policy = PolicyFieldsFragment;

const ACTIONS: { value: PolicyAction; label: string; hint: string }[] = [
  { value: "REQUIRE_APPROVAL", label: "Require approval", hint: "hold the call until a person decides" },
  { value: "BLOCK", label: "Block", hint: "refuse the call" },
  { value: "ALLOW", label: "Allow", hint: "let it through (record that a policy allowed it)" },
];

const OPS: { value: MatchOp; label: string }[] = [
  { value: "EQ", label: "equals" },
  { value: "IN", label: "is one of" },
  { value: "GLOB", label: "matches glob" },
  { value: "LT", label: "<" },
  { value: "LTE", label: "≤" },
  { value: "GT", label: ">" },
  { value: "GTE", label: "≥" },
];

interface MatchDraft {
  path: string;
  op: MatchOp;
  value: string;
}

interface Draft {
  name: string;
  description: string;
  action: PolicyAction;
  toolName: string;
  actionHint: string;
  agentId: string;
  incidentOpenOnServiceFrom: string;
  dryRun: boolean;
  matches: MatchDraft[];
}

const EMPTY: Draft = {
  name: "",
  description: "",
  action: "REQUIRE_APPROVAL",
  toolName: "",
  actionHint: "",
  agentId: "",
  incidentOpenOnServiceFrom: "",
  dryRun: false,
  matches: [],
};

function toDraft(policy: Policy): Draft {
  return {
    name: policy.name,
    description: policy.description ?? "",
    action: policy.action,
    toolName: policy.toolName ?? "",
    actionHint: policy.actionHint ?? "",
    agentId: policy.agentId ?? "",
    incidentOpenOnServiceFrom: policy.incidentOpenOnServiceFrom ?? "",
    dryRun: policy.dryRun,
    matches: policy.inputMatches.map((m) => ({ path: m.path, op: m.op, value: JSON.stringify(m.value) })),
  };
}

/** A match value is JSON when it parses (42, true, ["a","b"]), else the plain string. */
function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function toInput(draft: Draft): PolicyInput {
  const orNull = (text: string): string | null => text.trim() || null;
  return {
    name: draft.name.trim(),
    description: orNull(draft.description),
    action: draft.action,
    toolName: orNull(draft.toolName),
    actionHint: orNull(draft.actionHint),
    agentId: orNull(draft.agentId),
    incidentOpenOnServiceFrom: orNull(draft.incidentOpenOnServiceFrom),
    dryRun: draft.dryRun,
    inputMatches: draft.matches.map((m) => ({ path: m.path.trim(), op: m.op, value: parseValue(m.value) })),
  };
}

function policyInput(policy: Policy, patch: Partial<PolicyInput> = {}): PolicyInput {
  return { ...toInput(toDraft(policy)), ...patch };
}

/** Per-field messages from a BAD_USER_INPUT error ({field, message} in extensions.fields). */
function fieldErrors(error: CombinedError | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of error?.graphQLErrors ?? []) {
    const fields = e.extensions?.fields;
    if (Array.isArray(fields)) {
      for (const f of fields as { field?: string; message?: string }[]) {
        if (f.field && f.message) out[f.field] = f.message;
      }
    }
  }
  return out;
}

function describeMatch(m: Policy["inputMatches"][number]): string {
  const op = OPS.find((o) => o.value === m.op)?.label ?? m.op;
  return `${m.path} ${op} ${JSON.stringify(m.value)}`;
}

function Conditions({ policy }: { policy: Policy }) {
  const parts: string[] = [];
  if (policy.toolName) parts.push(`tool is ${policy.toolName}`);
  if (policy.actionHint) parts.push(`action hint is ${policy.actionHint}`);
  if (policy.agentId) parts.push(`agent is ${policy.agentId}`);
  for (const m of policy.inputMatches) parts.push(`input ${describeMatch(m)}`);
  if (policy.incidentOpenOnServiceFrom) {
    parts.push(`an incident is open on the service named by input ${policy.incidentOpenOnServiceFrom}`);
  }
  return (
    <p className="conditions">
      <span className="muted">When </span>
      {parts.length ? parts.join(" and ") : "any tool call"}
    </p>
  );
}

function PolicyForm({
  initial,
  editing,
  busy,
  error,
  notice,
  onSubmit,
  onCancel,
}: {
  initial: Draft;
  editing: boolean;
  busy: boolean;
  error: CombinedError | undefined;
  notice?: string | null;
  onSubmit: (draft: Draft) => void;
  onCancel: () => void;
}) {
  const [draft, setDraft] = useState(initial);
  useEffect(() => setDraft(initial), [initial]);
  const errors = fieldErrors(error);
  const set = <K extends keyof Draft>(key: K, value: Draft[K]): void => setDraft({ ...draft, [key]: value });
  const setMatch = (index: number, patch: Partial<MatchDraft>): void =>
    set(
      "matches",
      draft.matches.map((m, i) => (i === index ? { ...m, ...patch } : m)),
    );
  const submit = (event: FormEvent): void => {
    event.preventDefault();
    onSubmit(draft);
  };
  const fieldError = (name: string) =>
    errors[name] ? (
      <small className="field-error" id={`err-${name}`}>
        {errors[name]}
      </small>
    ) : null;
  const textField = (name: keyof Draft & string, label: string, hint?: string) => (
    <div className="field">
      <label htmlFor={`policy-${name}`}>{label}</label>
      <input
        id={`policy-${name}`}
        name={name}
        value={draft[name] as string}
        placeholder={hint}
        aria-invalid={errors[name] ? true : undefined}
        aria-describedby={errors[name] ? `err-${name}` : undefined}
        onChange={(event) => set(name, event.target.value as never)}
      />
      {fieldError(name)}
    </div>
  );
  return (
    <form className="policy-form" onSubmit={submit} noValidate>
      {textField("name", "Name", "e.g. Require approval for production deploys")}
      <fieldset className="field radios">
        <legend>Action</legend>
        {ACTIONS.map((a) => (
          <label key={a.value} className="check">
            <input
              type="radio"
              name="action"
              value={a.value}
              checked={draft.action === a.value}
              onChange={() => set("action", a.value)}
            />
            <ActionBadge action={a.value} /> <span className="muted">{a.hint}</span>
          </label>
        ))}
      </fieldset>
      <div className="form-grid">
        {textField("toolName", "Tool name (glob)", "any tool, or e.g. deploy*")}
        {textField("actionHint", "Action hint", "any, or e.g. deploy")}
        {textField("agentId", "Agent id (glob)", "any agent")}
        {textField(
          "incidentOpenOnServiceFrom",
          "Only while an incident is open on the service in input field",
          "e.g. service",
        )}
      </div>
      <fieldset className="field matches">
        <legend>Input conditions</legend>
        {draft.matches.length === 0 ? <p className="muted">None: any input matches.</p> : null}
        {draft.matches.map((m, index) => (
          <div className="match-row" key={index}>
            <input
              aria-label={`Condition ${index + 1} path`}
              name={`match-path-${index}`}
              placeholder="environment"
              value={m.path}
              onChange={(event) => setMatch(index, { path: event.target.value })}
            />
            <select
              aria-label={`Condition ${index + 1} operator`}
              value={m.op}
              onChange={(event) => setMatch(index, { op: event.target.value as MatchOp })}
            >
              {OPS.map((o) => (
                <option key={o.value} value={o.value}>
                  {o.label}
                </option>
              ))}
            </select>
            <input
              aria-label={`Condition ${index + 1} value`}
              name={`match-value-${index}`}
              placeholder='"production" or ["a","b"] or 100'
              value={m.value}
              onChange={(event) => setMatch(index, { value: event.target.value })}
            />
            <button
              type="button"
              className="icon-button"
              aria-label={`Remove condition ${index + 1}`}
              onClick={() =>
                set(
                  "matches",
                  draft.matches.filter((_, i) => i !== index),
                )
              }
            >
              ✕
            </button>
            {fieldError(`inputMatches[${index}]`)}
            {fieldError(`inputMatches[${index}].path`)}
            {fieldError(`inputMatches[${index}].op`)}
            {fieldError(`inputMatches[${index}].value`)}
          </div>
        ))}
        <button
          type="button"
          className="button button-small"
          onClick={() => set("matches", [...draft.matches, { path: "", op: "EQ", value: "" }])}
        >
          + Add a condition
        </button>
        <p className="hint">
          Paths are dotted, into the call's <code>inputPayload</code>. Values are JSON where they parse, else
          text.
        </p>
      </fieldset>
      <label className="field">
        <span>Description</span>
        <textarea
          name="description"
          rows={2}
          value={draft.description}
          onChange={(event) => set("description", event.target.value)}
        />
      </label>
      <label className="check">
        <input
          type="checkbox"
          checked={draft.dryRun}
          onChange={(event) => set("dryRun", event.target.checked)}
        />
        Dry run: record what it would decide, enforce nothing
      </label>
      {error ? (
        <p className="field-error" role="alert">
          {errorMessage(error)}
          {notice ? ` ${notice}` : null}
        </p>
      ) : null}
      <div className="form-actions">
        <button type="button" className="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" className="button button-primary" disabled={busy}>
          {busy ? "Saving…" : editing ? "Save policy" : "Create policy"}
        </button>
      </div>
    </form>
  );
}

export function PoliciesPage() {
  useTitle("Policies");
  const viewer = useViewer();
  const isAdmin = viewer.can("ADMIN");
  const now = useNow(30_000);
  const { hash } = useLocation();
  const [{ data, error, fetching }, refetch] = useQuery({ query: PoliciesDocument });
  const [editing, setEditing] = useState<{ policy: Policy | null; draft: Draft } | null>(null);
  const [deleting, setDeleting] = useState<Policy | null>(null);
  const [created, create] = useMutation(CreateDocument);
  const [updated, update] = useMutation(UpdateDocument);
  const [deleted, remove] = useMutation(DeleteDocument);
  const [toggleError, setToggleError] = useState<string | null>(null);
  const [formError, setFormError] = useState<CombinedError | undefined>(undefined);
  const [stale, setStale] = useState<string | null>(null);
  const client = useClient();
  const focusId = hash.startsWith("#") ? hash.slice(1) : null;

  useEffect(() => {
    if (focusId && data) document.getElementById(focusId)?.scrollIntoView({ block: "center" });
  }, [focusId, data]);

  const reload = (): void => refetch({ requestPolicy: "network-only" });

  // An update names the version it was made from: a policy someone changed meanwhile is
  // not overwritten (CONFLICT, saying so), and the list is reloaded to show the change.
  const save = async (draft: Draft): Promise<void> => {
    const input = toInput(draft);
    const policy = editing?.policy;
    const result = policy
      ? await update({ id: policy.id, input, expectedVersion: policy.version })
      : await create({ input });
    setFormError(result.error);
    setStale(null);
    if (!result.error) {
      setEditing(null);
      reload();
    } else if (policy && errorCodes(result.error).includes("NOT_FOUND")) {
      reload(); // deleted meanwhile: its row goes; the form keeps the draft and says so
    } else if (policy && errorCodes(result.error).includes("CONFLICT")) {
      // Changed by someone else since the form opened: the form now edits that version, so
      // saving again is a choice made knowing it (a name taken is the other CONFLICT).
      const fresh = await client.query(PoliciesDocument, {}, { requestPolicy: "network-only" }).toPromise();
      const current = fresh.data?.policies.find((p) => p.id === policy.id);
      if (current && current.version !== policy.version) {
        setEditing({ policy: current, draft });
        setStale(`Saving again replaces version ${current.version} with this form.`);
      }
    }
  };

  const toggleDryRun = async (policy: Policy): Promise<void> => {
    setToggleError(null);
    const input = policyInput(policy, { dryRun: !policy.dryRun });
    const result = await update({ id: policy.id, input, expectedVersion: policy.version });
    if (result.error) {
      setToggleError(`${policy.name}: ${errorMessage(result.error)}`);
      const codes = errorCodes(result.error);
      if (codes.includes("CONFLICT") || codes.includes("NOT_FOUND")) reload(); // changed or deleted meanwhile
    }
  };

  const confirmDelete = async (): Promise<void> => {
    if (!deleting) return;
    const result = await remove({ id: deleting.id });
    if (!result.error) {
      setDeleting(null);
      reload();
    }
  };

  const policies = data?.policies;
  return (
    <main className="page" id="main">
      <div className="page-head">
        <h1>Policies</h1>
        <p className="muted">
          Checked on every tool call, in this order: block beats require approval beats allow; no match
          allows.
        </p>
        <div className="page-actions">
          <button
            type="button"
            className="button button-primary"
            disabled={!isAdmin}
            title={isAdmin ? undefined : "Needs an admin key"}
            onClick={() => {
              setFormError(undefined);
              setEditing({ policy: null, draft: EMPTY });
            }}
          >
            New policy
          </button>
        </div>
      </div>
      {!isAdmin ? <p className="notice">You can read policies; changing them needs an admin key.</p> : null}
      {toggleError ? <ErrorNote error={toggleError} /> : null}
      {error && !data ? (
        <ErrorNote error={error} retry={reload} />
      ) : !policies ? (
        fetching ? (
          <Loading what="Loading policies" />
        ) : null
      ) : policies.length === 0 ? (
        <Empty title="No policies yet: every tool call is allowed.">
          <p>Create one to block risky calls or hold them for a person's approval.</p>
        </Empty>
      ) : (
        <ol className="policies" aria-label="Policies">
          {policies.map((policy) => (
            <li
              key={policy.id}
              id={policy.id}
              className={`policy${policy.id === focusId ? " policy-focused" : ""}${policy.dryRun ? " policy-dry" : ""}`}
              data-policy-id={policy.id}
            >
              <div className="policy-main">
                <div className="policy-head">
                  <ActionBadge action={policy.action} />
                  <h2>{policy.name}</h2>
                  {policy.dryRun ? <span className="tag tag-dry">dry run</span> : null}
                  <span className="muted" title={`Updated ${fullDate(policy.updatedAt)}`}>
                    v{policy.version} · {policy.updatedBy ? `${policy.updatedBy}, ` : ""}
                    {ago(policy.updatedAt, now)}
                  </span>
                </div>
                <Conditions policy={policy} />
                {policy.description ? <p className="policy-description">{policy.description}</p> : null}
              </div>
              <div className="policy-actions">
                <label className="switch" title="Dry run: decisions are recorded, not enforced">
                  <input
                    type="checkbox"
                    role="switch"
                    checked={policy.dryRun}
                    disabled={!isAdmin || updated.fetching}
                    onChange={() => void toggleDryRun(policy)}
                    aria-label={`Dry run for ${policy.name}`}
                  />
                  Dry run
                </label>
                <button
                  type="button"
                  className="button button-small"
                  disabled={!isAdmin}
                  onClick={() => {
                    setFormError(undefined);
                    setEditing({ policy, draft: toDraft(policy) });
                  }}
                >
                  Edit
                </button>
                <button
                  type="button"
                  className="button button-small button-quiet-danger"
                  disabled={!isAdmin}
                  onClick={() => setDeleting(policy)}
                >
                  Delete
                </button>
              </div>
            </li>
          ))}
        </ol>
      )}
      <Dialog
        open={editing !== null}
        onClose={() => setEditing(null)}
        title={editing?.policy ? `Edit “${editing.policy.name}”` : "New policy"}
      >
        {editing ? (
          <PolicyForm
            initial={editing.draft}
            editing={editing.policy !== null}
            busy={created.fetching || updated.fetching}
            error={formError}
            notice={stale}
            onSubmit={(draft) => void save(draft)}
            onCancel={() => setEditing(null)}
          />
        ) : null}
      </Dialog>
      <Dialog open={deleting !== null} onClose={() => setDeleting(null)} title="Delete the policy?">
        {deleting ? (
          <div>
            <p>
              “{deleting.name}” stops applying to new tool calls at once. Decisions already taken keep their
              record of it.
            </p>
            {deleted.error ? (
              <p className="field-error" role="alert">
                {errorMessage(deleted.error)}
              </p>
            ) : null}
            <div className="form-actions">
              <button type="button" className="button" onClick={() => setDeleting(null)}>
                Cancel
              </button>
              <button
                type="button"
                className="button button-danger"
                disabled={deleted.fetching}
                onClick={() => void confirmDelete()}
              >
                Delete
              </button>
            </div>
          </div>
        ) : null}
      </Dialog>
    </main>
  );
}
