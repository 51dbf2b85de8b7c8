// Timeline entries: a list of rows, each opening its details (metadata and payloads).
import { Link } from "react-router";
import type { Entry } from "../api/timeline";
import { ago, clock, fullDate, useNow } from "../format";
import { kindLook } from "../kinds";
import { Chip, Where } from "./Badges";
import { Dialog } from "./Dialog";
import { JsonView } from "./JsonView";
import { KindBadge } from "./KindBadge";
import { LinkList } from "./Links";

export function EntryList({
  entries,
  onOpen,
  live,
  label,
}: {
  entries: Entry[];
  onOpen: (entry: Entry) => void;
  live?: Set<string>;
  label: string;
}) {
  const now = useNow(15_000);
  return (
    <ol className="entries" aria-label={label}>
      {entries.map((entry) => {
        const look = kindLook(entry.kind);
        return (
          <li key={entry.id} className={live?.has(entry.id) ? "entry-live" : undefined}>
            <button
              type="button"
              className={`entry entry-${look.family}`}
              onClick={() => onOpen(entry)}
              data-entry-id={entry.id}
              data-kind={entry.kind}
            >
              <time className="entry-time" dateTime={entry.occurredAt} title={fullDate(entry.occurredAt)}>
                <span className="entry-clock">{clock(entry.occurredAt, now)}</span>
                <span className="entry-ago">{ago(entry.occurredAt, now)}</span>
              </time>
              <span className="entry-main">
                <span className="entry-head">
                  <KindBadge kind={entry.kind} />
                  <span className="entry-summary">{entry.summary}</span>
                </span>
                <span className="entry-meta">
                  <Where service={entry.service} environment={entry.environment} />
                  {entry.labels.map((label) => (
                    <Chip key={label} kind="label" value={label} />
                  ))}
                  {entry.actor ? <span className="entry-actor">by {entry.actor}</span> : null}
                </span>
                {noteOf(entry) ? <span className="entry-note">“{noteOf(entry)}”</span> : null}
              </span>
            </button>
          </li>
        );
      })}
    </ol>
  );
}

/** The note a person gave with an acknowledge or resolve (an annotation's note is its
 * summary already). */
function noteOf(entry: Entry): string | null {
  if (entry.kind === "INCIDENT_ANNOTATED") return null;
  const details = entry.details as { note?: unknown } | null | undefined;
  return typeof details?.note === "string" && details.note.trim() ? details.note : null;
}

type Subject = NonNullable<Entry["subject"]>;

function subjectLink(subject: Subject): { to: string; text: string } | null {
  const typed = subject as { __typename: string; id?: string; run?: { id: string } | null };
  switch (typed.__typename) {
    case "Incident":
      return typed.id ? { to: `/incidents/${typed.id}`, text: "Open the incident" } : null;
    case "Run":
      return typed.id ? { to: `/runs/${typed.id}`, text: "Open the run" } : null;
    case "ToolCall":
      return typed.run?.id ? { to: `/runs/${typed.run.id}`, text: "Open the run" } : null;
    case "Approval":
      return typed.id ? { to: `/approvals?focus=${typed.id}`, text: "Open the approval" } : null;
    default:
      return null;
  }
}

// Fields of the JSON scalar: what the sender wrote, shown as it is (a `__typename` in it
// is theirs).
const JSON_FIELDS = new Set([
  "agentContext",
  "customDetails",
  "details",
  "inputPayload",
  "metadata",
  "outputPayload",
  "value",
]);

/** A subject as its payload: without the `__typename` urql adds to every object it selects. */
function asPayload(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(asPayload);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => key !== "__typename")
      .map(([key, inner]) => [key, JSON_FIELDS.has(key) ? inner : asPayload(inner)]),
  );
}

export function EntryDetails({ entry, onClose }: { entry: Entry | null; onClose: () => void }) {
  const now = useNow(5_000);
  const subject = entry?.subject ?? null;
  const link = subject ? subjectLink(subject) : null;
  const links = (subject as { links?: { href: string; text?: string | null }[] } | null)?.links ?? [];
  return (
    <Dialog
      open={entry !== null}
      onClose={onClose}
      variant="drawer"
      title={entry ? <KindBadge kind={entry.kind} /> : ""}
    >
      {entry ? (
        <div className="details">
          <p className="details-summary">{entry.summary}</p>
          <dl className="facts">
            <dt>When</dt>
            <dd>
              {fullDate(entry.occurredAt)} <span className="muted">({ago(entry.occurredAt, now)})</span>
            </dd>
            <dt>Service</dt>
            <dd>{entry.service ?? <span className="muted">—</span>}</dd>
            <dt>Environment</dt>
            <dd>{entry.environment ?? <span className="muted">—</span>}</dd>
            <dt>Labels</dt>
            <dd>
              {entry.labels.length ? (
                entry.labels.map((label) => <Chip key={label} kind="label" value={label} />)
              ) : (
                <span className="muted">—</span>
              )}
            </dd>
            <dt>Actor</dt>
            <dd>{entry.actor ?? <span className="muted">—</span>}</dd>
            <dt>Entry</dt>
            <dd>
              <code>{entry.id}</code>
            </dd>
          </dl>
          {links.length ? <LinkList links={links} /> : null}
          {link ? (
            <p>
              <Link to={link.to} className="button button-small" onClick={onClose}>
                {link.text} →
              </Link>
            </p>
          ) : null}
          <h3>Details</h3>
          <JsonView value={entry.details} label="Entry details" />
          {subject ? (
            <>
              <h3>{subject.__typename}</h3>
              <JsonView value={asPayload(subject)} label={`${subject.__typename} payload`} />
            </>
          ) : null}
        </div>
      ) : null}
    </Dialog>
  );
}
