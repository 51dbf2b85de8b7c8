import { type ReactNode, useCallback, useState } from "react";
import { Link, useLocation, useParams, useSearchParams } from "react-router";
import { useMutation } from "urql";
import { useRefreshOn } from "../api/refresh";
import type { Entry } from "../api/timeline";
import { Chip, Severity, Status } from "../components/Badges";
import { EntryDetails, EntryList } from "../components/Entries";
import { JsonView } from "../components/JsonView";
import { NoteDialog } from "../components/NoteDialog";
import { useKeptQuery } from "../api/kept";
import { BackLink } from "../components/BackLink";
import { LinkList, SenderLink } from "../components/Links";
import { Empty, ErrorNote, KeptNote, Loading, errorMessage } from "../components/States";
import { ago, clock, duration, fullDate, useNow } from "../format";
import { graphql } from "../gql";
import { useViewer } from "../viewer";
import { useTitle } from "../title";

/** How many alerts, timeline entries and suspect changes are shown (fewer if the server's
 * largest page is smaller); the query asks one more of the last two to know whether there
 * are others. */
const PAGE = 50;
/** The longest suspect-changes window the server takes, in seconds (`MAX_SUSPECT_WINDOW`). */
const MAX_WINDOW = 30 * 24 * 3600;

const IncidentDocument = graphql(`
  query Incident($id: ID!, $window: Int, $shown: Int!, $asked: Int!) {
    incident(id: $id) {
      ...IncidentRow
      dedupKey
      timestamp
      component
      group
      class
      customDetails
      images {
        src
        href
        alt
      }
      links {
        href
        text
      }
      client
      clientUrl
      alerts(first: $shown) {
        id
        receivedAt
        actor
        summary
        source
        severity
        timestamp
        component
        group
        class
        customDetails
      }
      timeline(first: $asked) {
        ...TimelineEntryFields
      }
      suspectChanges(window: $window, first: $asked) {
        ...TimelineEntryFields
      }
    }
  }
`);

const AcknowledgeDocument = graphql(`
  mutation AcknowledgeIncident($id: ID!, $note: String) {
    acknowledgeIncident(id: $id, note: $note) {
      id
      status
      acknowledgedAt
      acknowledgedBy
    }
  }
`);

const ResolveDocument = graphql(`
  mutation ResolveIncident($id: ID!, $note: String) {
    resolveIncident(id: $id, note: $note) {
      id
      status
      resolvedAt
      resolvedBy
    }
  }
`);

const AnnotateDocument = graphql(`
  mutation AnnotateIncident($id: ID!, $note: String!) {
    annotateIncident(id: $id, note: $note) {
      id
    }
  }
`);

const WINDOWS: { seconds: number | null; label: string }[] = [
  { seconds: 30 * 60, label: "30 minutes" },
  { seconds: 60 * 60, label: "1 hour" },
  { seconds: null, label: "default (server)" },
  { seconds: 6 * 3600, label: "6 hours" },
  { seconds: 24 * 3600, label: "24 hours" },
  { seconds: 7 * 24 * 3600, label: "7 days" },
];

/** The menu's windows, and the link's own window where the menu has none (`?window=7200`),
 * so that the menu shows the window the list covers. */
function windowOptions(window: number | null): { seconds: number | null; label: string }[] {
  if (window === null || WINDOWS.some((w) => w.seconds === window)) return WINDOWS;
  const own = { seconds: window, label: duration(window * 1000) };
  return [...WINDOWS, own].sort((a, b) => (a.seconds ?? 7200) - (b.seconds ?? 7200));
}

type Action = "acknowledge" | "resolve" | "annotate";

const DIALOG: Record<Action, { title: string; description: string; confirm: string; placeholder: string }> = {
  acknowledge: {
    title: "Acknowledge the incident",
    description:
      "Tell the team you are on it. New alerts still count; a trigger after resolve opens a new incident.",
    confirm: "Acknowledge",
    placeholder: "e.g. Looking into it, rolled back 1b2c3d4",
  },
  resolve: {
    title: "Resolve the incident",
    description: "Close the incident. A later trigger with the same dedup key opens a new one.",
    confirm: "Resolve",
    placeholder: "e.g. Fixed by rollback",
  },
  annotate: {
    title: "Add a note",
    description: "The note goes on the incident's timeline, with your key's name.",
    confirm: "Add note",
    placeholder: "e.g. db-1 disk at 97%, rotating logs",
  },
};

/** An incident action: disabled, with the reason as its tooltip, for a key that cannot write. */
function ActionButton({
  className,
  enabled,
  onClick,
  children,
}: {
  className?: string;
  enabled: boolean;
  onClick: () => void;
  children: ReactNode;
}) {
  return (
    <button
      type="button"
      className={className ? `button ${className}` : "button"}
      disabled={!enabled}
      title={enabled ? undefined : "Needs a key with the events:write scope"}
      onClick={onClick}
    >
      {children}
    </button>
  );
}

export function IncidentPage() {
  const { id = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const { state } = useLocation(); // the list it was opened from, kept as the window changes
  // A link's own window, if it is one the server takes (whole seconds up to MAX_WINDOW); any
  // other value is the default, not the raw GraphQL error it drew.
  const windowParam = Number(params.get("window"));
  const window =
    Number.isInteger(windowParam) && windowParam > 0 && windowParam <= MAX_WINDOW ? windowParam : null;
  const viewer = useViewer();
  const now = useNow(5_000);
  const shown = viewer.page(PAGE);
  const asked = viewer.page(PAGE + 1); // `shown` itself where no larger page is taken
  const variables = { id, window, shown, asked };
  const [{ data, error, fetching, kept }, refetch] = useKeptQuery({ query: IncidentDocument, variables });
  const refresh = useCallback(() => refetch({ requestPolicy: "network-only" }), [refetch]);
  const incident = data?.incident;
  useTitle(incident ? incident.summary : "Incident");
  useRefreshOn({ services: incident ? [incident.service.name] : null }, refresh, Boolean(incident));

  const [action, setAction] = useState<Action | null>(null);
  const [ack, acknowledge] = useMutation(AcknowledgeDocument);
  const [res, resolve] = useMutation(ResolveDocument);
  const [ann, annotate] = useMutation(AnnotateDocument);
  const [open, setOpen] = useState<Entry | null>(null);
  const busy = ack.fetching || res.fetching || ann.fetching;
  const [actionError, setActionError] = useState<string | null>(null);
  const startAction = (next: Action): void => {
    setActionError(null);
    setAction(next);
  };

  if (!incident) {
    return (
      <main className="page" id="main">
        <p>
          <BackLink to="/incidents" label="Incidents" />
        </p>
        {error ? (
          <ErrorNote error={error} retry={refresh} />
        ) : fetching || !data ? (
          <Loading what="Loading the incident" />
        ) : (
          <Empty title="No such incident in this workspace.">
            <p>
              <code>{id}</code> does not exist, or belongs to another workspace.
            </p>
          </Empty>
        )}
      </main>
    );
  }

  const submit = async (note: string): Promise<void> => {
    const result =
      action === "annotate"
        ? await annotate({ id: incident.id, note })
        : await (action === "acknowledge" ? acknowledge : resolve)({
            id: incident.id,
            note: note || null,
          });
    setActionError(result.error ? errorMessage(result.error) : null);
    if (!result.error) {
      setAction(null);
      refresh();
    }
  };
  const canAct = viewer.can("EVENTS_WRITE");
  const openFor =
    Date.parse(incident.resolvedAt ?? new Date(Math.max(now, Date.now())).toISOString()) -
    Date.parse(incident.openedAt);

  return (
    <main className="page" id="main">
      <p className="crumbs">
        <BackLink to="/incidents" label="Incidents" />
      </p>
      {error && kept ? <KeptNote error={error} retry={refresh} /> : null}
      <header className={`incident-head sev-edge-${incident.severity.toLowerCase()}`}>
        <div className="incident-head-main">
          <div className="badges">
            <Severity severity={incident.severity} />
            <Status status={incident.status} />
            <Chip kind="service" value={incident.service.name} />
          </div>
          <h1>{incident.summary}</h1>
          <p className="muted">
            Opened {ago(incident.openedAt, now)} · {incident.alertCount}{" "}
            {incident.alertCount === 1 ? "alert" : "alerts"} ·{" "}
            {incident.status === "RESOLVED" ? "lasted" : "open for"} {duration(openFor)}
          </p>
        </div>
        <div className="incident-actions">
          {incident.status === "TRIGGERED" ? (
            <ActionButton
              className="button-primary"
              enabled={canAct}
              onClick={() => startAction("acknowledge")}
            >
              Acknowledge
            </ActionButton>
          ) : null}
          {incident.status !== "RESOLVED" ? (
            <ActionButton className="button-success" enabled={canAct} onClick={() => startAction("resolve")}>
              Resolve
            </ActionButton>
          ) : null}
          <ActionButton enabled={canAct} onClick={() => startAction("annotate")}>
            Add note
          </ActionButton>
        </div>
      </header>

      <div className="columns">
        <div className="column-main">
          <section className="section" aria-labelledby="suspects-title">
            <div className="section-head">
              <h2 id="suspects-title">What changed before it</h2>
              <label className="field field-inline">
                <span>Window</span>
                <select
                  value={window ?? ""}
                  onChange={(event) => {
                    const next = new URLSearchParams(params);
                    if (event.target.value) next.set("window", event.target.value);
                    else next.delete("window");
                    setParams(next, { replace: true, state });
                  }}
                >
                  {windowOptions(window).map((w) => (
                    <option key={w.label} value={w.seconds ?? ""}>
                      {w.label}
                    </option>
                  ))}
                </select>
              </label>
            </div>
            <p className="muted section-hint">
              Changes and agent tool calls on <strong>{incident.service.name}</strong> before it opened,
              newest first.
            </p>
            {incident.suspectChanges.length ? (
              <EntryList
                entries={incident.suspectChanges.slice(0, shown)}
                onOpen={setOpen}
                label="What changed before it"
              />
            ) : (
              <Empty title="Nothing changed on this service in that window." />
            )}
            {incident.suspectChanges.length >= asked ? (
              <p className="muted">The newest {shown} are shown.</p>
            ) : null}
          </section>
          <section className="section" aria-labelledby="incident-timeline-title">
            <h2 id="incident-timeline-title">Timeline</h2>
            {incident.timeline.length ? (
              <EntryList
                entries={incident.timeline.slice(0, shown)}
                onOpen={setOpen}
                label="Incident timeline"
              />
            ) : (
              <Empty title="No entries yet." />
            )}
            {incident.timeline.length >= asked ? (
              <p className="muted">
                The newest {shown} are shown; {asked > shown ? "older ones are" : "any older ones are"} on the{" "}
                <Link to={`/timeline?service=${encodeURIComponent(incident.service.name)}`}>timeline</Link>.
              </p>
            ) : null}
          </section>
        </div>
        <aside className="column-side">
          <section className="section panel" aria-labelledby="facts-title">
            <h2 id="facts-title">Details</h2>
            <dl className="facts">
              <dt>Opened</dt>
              <dd title={fullDate(incident.openedAt)}>{fullDate(incident.openedAt)}</dd>
              <dt>Last alert</dt>
              <dd title={fullDate(incident.lastSeenAt)}>{ago(incident.lastSeenAt, now)}</dd>
              {incident.acknowledgedAt ? (
                <>
                  <dt>Acknowledged</dt>
                  <dd>
                    {ago(incident.acknowledgedAt, now)}
                    {incident.acknowledgedBy ? ` by ${incident.acknowledgedBy}` : ""}
                  </dd>
                </>
              ) : null}
              {incident.resolvedAt ? (
                <>
                  <dt>Resolved</dt>
                  <dd>
                    {ago(incident.resolvedAt, now)}
                    {incident.resolvedBy ? ` by ${incident.resolvedBy}` : ""}
                  </dd>
                </>
              ) : null}
              <dt>Source</dt>
              <dd>{incident.source}</dd>
              {incident.component ? (
                <>
                  <dt>Component</dt>
                  <dd>{incident.component}</dd>
                </>
              ) : null}
              {incident.group ? (
                <>
                  <dt>Group</dt>
                  <dd>{incident.group}</dd>
                </>
              ) : null}
              {incident.class ? (
                <>
                  <dt>Class</dt>
                  <dd>{incident.class}</dd>
                </>
              ) : null}
              <dt>Dedup key</dt>
              <dd>
                <code>{incident.dedupKey}</code>
              </dd>
              <dt>Incident key</dt>
              <dd>
                <code>{incident.incidentKey}</code>
              </dd>
              {incident.client ? (
                <>
                  <dt>Client</dt>
                  <dd>
                    <SenderLink href={incident.clientUrl}>{incident.client}</SenderLink>
                  </dd>
                </>
              ) : null}
            </dl>
            <LinkList links={incident.links} />
            <h3>Custom details</h3>
            <JsonView value={incident.customDetails} label="Custom details" />
          </section>
          <section className="section" aria-labelledby="alerts-title">
            <h2 id="alerts-title">
              Alert history <span className="muted">({incident.alertCount})</span>
            </h2>
            <ol className="alerts">
              {incident.alerts.map((alert) => (
                <li key={alert.id} className="alert">
                  <div className="alert-head">
                    <time dateTime={alert.receivedAt} title={fullDate(alert.receivedAt)}>
                      {clock(alert.receivedAt, now)}
                    </time>
                    <Severity severity={alert.severity} />
                    <span className="muted">{alert.source}</span>
                  </div>
                  <p className="alert-summary">{alert.summary}</p>
                  {alert.customDetails && Object.keys(alert.customDetails as object).length ? (
                    <details>
                      <summary>Custom details</summary>
                      <JsonView value={alert.customDetails} label="Alert custom details" />
                    </details>
                  ) : null}
                </li>
              ))}
            </ol>
            {incident.alertCount > incident.alerts.length ? (
              <p className="muted">The newest {incident.alerts.length} are shown.</p>
            ) : null}
          </section>
        </aside>
      </div>

      <NoteDialog
        open={action !== null}
        title={DIALOG[action ?? "acknowledge"].title}
        description={DIALOG[action ?? "acknowledge"].description}
        confirm={DIALOG[action ?? "acknowledge"].confirm}
        tone={action === "resolve" ? "success" : "primary"}
        required={action === "annotate"}
        placeholder={DIALOG[action ?? "acknowledge"].placeholder}
        busy={busy}
        error={actionError}
        onSubmit={(note) => void submit(note)}
        onClose={() => setAction(null)}
      />
      <EntryDetails entry={open} onClose={() => setOpen(null)} />
    </main>
  );
}
