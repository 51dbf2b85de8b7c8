import { useEffect, useRef, useState } from "react";
import { Link, useSearchParams } from "react-router";
import { useClient, type CombinedError } from "urql";
import { INCIDENT_KINDS, useRefreshOn } from "../api/refresh";
import { Chip, Severity } from "../components/Badges";
import { useKeptQuery } from "../api/kept";
import { useFromHere } from "../components/BackLink";
import { Empty, ErrorNote, KeptNote, Loading } from "../components/States";
import { ago, duration, fullDate, useNow } from "../format";
import { graphql } from "../gql";
import type { IncidentRowFragment, IncidentStatus, Severity as SeverityLevel } from "../gql/graphql";
import { useViewer } from "../viewer";
import { useTitle } from "../title";

graphql(`
  fragment IncidentRow on Incident {
    id
    incidentKey
    summary
    status
    severity
    source
    service {
      id
      name
    }
    alertCount
    openedAt
    lastSeenAt
    acknowledgedAt
    acknowledgedBy
    resolvedAt
    resolvedBy
  }
`);

const IncidentsDocument = graphql(`
  query Incidents($first: Int!, $services: [String!], $severities: [Severity!]) {
    open: incidents(
      filter: { statuses: [TRIGGERED], services: $services, severities: $severities }
      first: $first
    ) {
      nodes {
        ...IncidentRow
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
    acknowledged: incidents(
      filter: { statuses: [ACKNOWLEDGED], services: $services, severities: $severities }
      first: $first
    ) {
      nodes {
        ...IncidentRow
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
    resolved: incidents(
      filter: { statuses: [RESOLVED], services: $services, severities: $severities }
      first: $first
    ) {
      nodes {
        ...IncidentRow
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

// Older incidents of one status, after the first page.
const OlderIncidentsDocument = graphql(`
  query OlderIncidents(
    $status: IncidentStatus!
    $first: Int!
    $after: String!
    $services: [String!]
    $severities: [Severity!]
  ) {
    incidents(
      filter: { statuses: [$status], services: $services, severities: $severities }
      first: $first
      after: $after
    ) {
      nodes {
        ...IncidentRow
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

const PAGE = 100;
const SEVERITIES: SeverityLevel[] = ["CRITICAL", "ERROR", "WARNING", "INFO"];

const TABS: { key: "open" | "acknowledged" | "resolved"; label: string; status: IncidentStatus }[] = [
  { key: "open", label: "Open", status: "TRIGGERED" },
  { key: "acknowledged", label: "Acknowledged", status: "ACKNOWLEDGED" },
  { key: "resolved", label: "Resolved", status: "RESOLVED" },
];

function IncidentItem({ incident, now: ticked }: { incident: IncidentRowFragment; now: number }) {
  // The clock read now for both of the row's spans ("open …", and "last alert … ago", which
  // reads it too): the tick alone made "open" shorter than the time since its last alert.
  const now = Math.max(ticked, Date.now());
  const age = Date.parse(incident.resolvedAt ?? new Date(now).toISOString()) - Date.parse(incident.openedAt);
  const from = useFromHere();
  return (
    <li>
      <Link
        to={`/incidents/${incident.id}`}
        state={from}
        className={`incident-row sev-edge-${incident.severity.toLowerCase()}`}
      >
        <span className="incident-row-head">
          <Severity severity={incident.severity} />
          <span className="incident-summary">{incident.summary}</span>
        </span>
        <span className="incident-row-meta">
          <Chip kind="service" value={incident.service.name} />
          <span title="Alerts deduplicated into this incident">
            {incident.alertCount} {incident.alertCount === 1 ? "alert" : "alerts"}
          </span>
          <span title={`Opened ${fullDate(incident.openedAt)}`}>
            {incident.status === "RESOLVED" ? `lasted ${duration(age)}` : `open ${duration(age)}`}
          </span>
          <span title={fullDate(incident.lastSeenAt)}>last alert {ago(incident.lastSeenAt, now)}</span>
          {incident.status === "ACKNOWLEDGED" && incident.acknowledgedBy ? (
            <span>ack by {incident.acknowledgedBy}</span>
          ) : null}
          {incident.status === "RESOLVED" && incident.resolvedBy ? (
            <span>resolved by {incident.resolvedBy}</span>
          ) : null}
          <span className="muted incident-key">{incident.incidentKey}</span>
        </span>
      </Link>
    </li>
  );
}

export function IncidentsPage() {
  useTitle("Incidents");
  const [params, setParams] = useSearchParams();
  const tab = TABS.find((t) => t.key === params.get("status")) ?? TABS[0]!;
  const service = params.get("service")?.trim() ?? "";
  const [serviceDraft, setServiceDraft] = useState(service);
  // The box follows the URL when it changes otherwise (the menu's Incidents link, Back).
  useEffect(() => setServiceDraft(service), [service]);
  const severity = SEVERITIES.find((s) => s === params.get("severity")?.toUpperCase()) ?? null;
  const filter = { services: service ? [service] : null, severities: severity ? [severity] : null };
  const pageSize = useViewer().page(PAGE);
  const variables = { first: pageSize, ...filter };
  const [{ data, error, fetching, kept }, refetch] = useKeptQuery({ query: IncidentsDocument, variables });
  const client = useClient();
  // Pages after the first, for the tab shown; a new tab or filter starts again.
  const [older, setOlder] = useState<{
    key: string;
    nodes: IncidentRowFragment[];
    cursor: string | null;
    more: boolean;
  }>({
    key: "",
    nodes: [],
    cursor: null,
    more: false,
  });
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [olderError, setOlderError] = useState<CombinedError | null>(null);
  const pagesKey = `${tab.key}|${service}|${severity ?? ""}`;
  // What the queued work reads: the state as the last task left it, not as last rendered.
  const olderRef = useRef(older);
  const keyRef = useRef(pagesKey);
  keyRef.current = pagesKey;
  const keep = (next: typeof older): void => {
    olderRef.current = next;
    setOlder(next);
  };
  // Refreshes and "Load older" run one at a time, each from what the one before left.
  const queue = useRef<Promise<void>>(Promise.resolve());
  const refreshWaiting = useRef(false);
  const enqueue = (task: () => Promise<void>): void => {
    queue.current = queue.current.then(task).catch(() => undefined);
  };
  const olderPage = async (status: IncidentStatus, after: string) =>
    await client
      .query(
        OlderIncidentsDocument,
        { status, first: pageSize, after, ...filter },
        { requestPolicy: "network-only" },
      )
      .toPromise();
  const firstPages = async () =>
    (
      await client
        .query(IncidentsDocument, { first: pageSize, ...filter }, { requestPolicy: "network-only" })
        .toPromise()
    ).data;

  // With older pages shown, they are fetched again after the new first page, down to the
  // last row shown (or as many rows and a page more, if it left the list): incidents new at
  // the top push the first page's last rows into them, where the rows kept from before
  // would leave a gap. One waiting refresh covers every event before it starts.
  const refresh = (): void => {
    if (refreshWaiting.current) return;
    refreshWaiting.current = true;
    const key = pagesKey;
    const status = tab.status;
    const tabKey = tab.key;
    enqueue(async () => {
      refreshWaiting.current = false;
      const shown = olderRef.current.key === key ? olderRef.current.nodes : [];
      if (keyRef.current !== key || shown.length === 0) {
        refetch({ requestPolicy: "network-only" });
        return;
      }
      const firstPage = (await firstPages())?.[tabKey];
      if (!firstPage) return;
      const lastShown = shown[shown.length - 1]!.id;
      const limit = shown.length + pageSize;
      let cursor = firstPage.pageInfo.endCursor ?? null;
      let more = firstPage.pageInfo.hasNextPage;
      const nodes: IncidentRowFragment[] = [];
      while (more && cursor && nodes.length < limit && !nodes.some((row) => row.id === lastShown)) {
        const page = (await olderPage(status, cursor)).data?.incidents;
        if (!page) return;
        nodes.push(...page.nodes);
        cursor = page.pageInfo.endCursor ?? null;
        more = page.pageInfo.hasNextPage;
      }
      if (keyRef.current === key) keep({ key, nodes, cursor, more });
    });
  };
  useRefreshOn({ kinds: [...INCIDENT_KINDS] }, refresh);
  const now = useNow(10_000);

  const select = (key: string): void => {
    const next = new URLSearchParams(params);
    next.set("status", key);
    setParams(next, { replace: true });
  };
  const first = data?.[tab.key];
  const extra = older.key === pagesKey ? older : null;
  const list = first && {
    nodes: [
      ...first.nodes,
      ...(extra?.nodes.filter((row) => !first.nodes.some((shown) => shown.id === row.id)) ?? []),
    ],
    hasNextPage: extra ? extra.more : first.pageInfo.hasNextPage,
  };
  const loadOlder = (): void => {
    if (loadingOlder) return;
    setLoadingOlder(true);
    const key = pagesKey;
    const status = tab.status;
    const tabKey = tab.key;
    enqueue(async () => {
      try {
        if (keyRef.current !== key) return;
        const shown = olderRef.current.key === key ? olderRef.current : null;
        // The first older page starts after the first page as it is now, fetched again.
        const after = shown ? shown.cursor : ((await firstPages())?.[tabKey].pageInfo.endCursor ?? null);
        if (!after) return;
        const result = await olderPage(status, after);
        setOlderError(result.error ?? null);
        const page = result.data?.incidents;
        if (!page || keyRef.current !== key) return;
        keep({
          key,
          nodes: [...(shown?.nodes ?? []), ...page.nodes],
          cursor: page.pageInfo.endCursor ?? null,
          more: page.pageInfo.hasNextPage,
        });
      } finally {
        setLoadingOlder(false);
      }
    });
  };

  return (
    <main className="page" id="main">
      <div className="page-head">
        <h1>Incidents</h1>
        <p className="muted">Alerts deduplicated into incidents, by status.</p>
        <form
          className="page-actions"
          onSubmit={(event) => {
            event.preventDefault();
            const next = new URLSearchParams(params);
            if (serviceDraft.trim()) next.set("service", serviceDraft.trim());
            else next.delete("service");
            setParams(next, { replace: true });
          }}
        >
          <label className="field field-inline">
            <span>Service</span>
            <input
              type="search"
              name="service"
              placeholder="all"
              value={serviceDraft}
              onChange={(event) => setServiceDraft(event.target.value)}
              onBlur={(event) => event.currentTarget.form?.requestSubmit()}
            />
          </label>
          <label className="field field-inline">
            <span>Severity</span>
            <select
              name="severity"
              value={severity ?? ""}
              onChange={(event) => {
                const next = new URLSearchParams(params);
                if (event.target.value) next.set("severity", event.target.value.toLowerCase());
                else next.delete("severity");
                setParams(next, { replace: true });
              }}
            >
              <option value="">any</option>
              {SEVERITIES.map((s) => (
                <option key={s} value={s}>
                  {s.toLowerCase()}
                </option>
              ))}
            </select>
          </label>
        </form>
      </div>
      <div className="tabs" role="tablist" aria-label="Incident status">
        {TABS.map((t) => {
          const page = data?.[t.key];
          // The tab shown counts what is listed, older pages loaded included.
          const count =
            t.key === tab.key && list
              ? { shown: list.nodes.length, more: list.hasNextPage }
              : page && { shown: page.nodes.length, more: page.pageInfo.hasNextPage };
          return (
            <button
              key={t.key}
              type="button"
              role="tab"
              id={`tab-${t.key}`}
              aria-selected={t.key === tab.key}
              aria-controls="incident-panel"
              className="tab"
              onClick={() => select(t.key)}
            >
              {t.label}
              {count ? (
                <span className={`tab-count${t.key === "open" && count.shown ? " tab-count-hot" : ""}`}>
                  {count.shown}
                  {count.more ? "+" : ""}
                </span>
              ) : null}
            </button>
          );
        })}
      </div>
      <section id="incident-panel" role="tabpanel" aria-labelledby={`tab-${tab.key}`}>
        {error && kept ? <KeptNote error={error} retry={refresh} /> : null}
        {error && !data ? (
          <ErrorNote error={error} retry={refresh} />
        ) : !list ? (
          fetching ? (
            <Loading what="Loading incidents" />
          ) : null
        ) : list.nodes.length === 0 ? (
          <Empty
            title={
              tab.key === "open"
                ? "No open incidents."
                : tab.key === "acknowledged"
                  ? "Nothing acknowledged and unresolved."
                  : "No resolved incidents yet."
            }
          >
            {tab.key === "open" ? (
              <p>
                Monitors open incidents with <code>POST /api/events</code> (or <code>/v2/enqueue</code>); they
                appear here live.
              </p>
            ) : null}
          </Empty>
        ) : (
          <ul className="incident-list" aria-label={`${tab.label} incidents`}>
            {list.nodes.map((incident) => (
              <IncidentItem key={incident.id} incident={incident} now={now} />
            ))}
          </ul>
        )}
        {olderError ? <ErrorNote error={olderError} /> : null}
        {list?.hasNextPage ? (
          <div className="more">
            <button type="button" className="button" onClick={loadOlder} disabled={loadingOlder}>
              {loadingOlder ? "Loading…" : "Load older incidents"}
            </button>
          </div>
        ) : null}
      </section>
    </main>
  );
}
