// The live timeline: the first page by query, then the subscription with `after`, so
// nothing committed in between is missed; after a drop it resumes from the newest entry.
import { useCallback, useEffect, useReducer, useRef } from "react";
import { useClient, type CombinedError } from "urql";
import { graphql } from "../gql";
import type { TimelineEntryFieldsFragment, TimelineFilter } from "../gql/graphql";
import { useViewer } from "../viewer";
import { errorCodes } from "./client";
import { useLiveSubscription } from "./live";

/** Errors about the question itself, which asking again cannot change. */
const ASKED_WRONG = new Set([
  "BAD_USER_INPUT",
  "FORBIDDEN",
  "QUERY_TOO_COMPLEX",
  "GRAPHQL_VALIDATION_FAILED",
]);

export type Entry = TimelineEntryFieldsFragment;

graphql(`
  fragment TimelineEntryFields on TimelineEntry {
    id
    cursor
    kind
    occurredAt
    summary
    service
    environment
    labels
    actor
    details
    subject {
      __typename
      ... on Change {
        id
        name
        category
        source
        metadata
        links {
          href
          text
        }
      }
      ... on Incident {
        id
        incidentKey
        dedupKey
        incidentStatus: status
        severity
        summary
        alertCount
        openedAt
      }
      ... on Run {
        id
        runId
        agentId
        runStatus: status
        task
        model
      }
      ... on ToolCall {
        id
        toolCallId
        toolName
        toolCallStatus: status
        decision
        decisionReason
        inputPayload
        outputPayload
        violation
        run {
          id
          runId
        }
      }
      ... on Approval {
        id
        approvalStatus: status
        reason
        expiresAt
        decidedBy
        comment
        toolCall {
          toolName
        }
      }
    }
  }
`);

const TimelineDocument = graphql(`
  query Timeline($filter: TimelineFilter, $first: Int, $after: String) {
    timeline(filter: $filter, first: $first, after: $after) {
      edges {
        node {
          ...TimelineEntryFields
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

// The first page, plus the workspace's newest entry whatever the filter: a resume starts
// after it even when nothing matching has been seen yet.
const TimelineStartDocument = graphql(`
  query TimelineStart($filter: TimelineFilter, $first: Int) {
    timeline(filter: $filter, first: $first) {
      edges {
        node {
          ...TimelineEntryFields
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
    newest: timeline(first: 1) {
      edges {
        node {
          id
          cursor
        }
      }
    }
  }
`);

const TimelineLiveDocument = graphql(`
  subscription TimelineLive($filter: TimelineFilter, $after: String) {
    timeline(filter: $filter, after: $after) {
      ...TimelineEntryFields
    }
  }
`);

/** Older entries are dropped past this many (the page can load them again). */
const MAX_ENTRIES = 1_000;

interface State {
  entries: Entry[];
  /** Ids that arrived live, to highlight them. */
  live: Set<string>;
  ready: boolean;
  loadingMore: boolean;
  hasNext: boolean;
  endCursor: string | null;
  error: CombinedError | null;
}

type Action =
  | { type: "reset" }
  | { type: "page"; entries: Entry[]; hasNext: boolean; endCursor: string | null }
  | { type: "live"; entry: Entry }
  | { type: "loadingMore" }
  | { type: "error"; error: CombinedError; first: boolean };

const initial: State = {
  entries: [],
  live: new Set(),
  ready: false,
  loadingMore: false,
  hasNext: false,
  endCursor: null,
  error: null,
};

function newestFirst(a: Entry, b: Entry): number {
  const byTime = Date.parse(b.occurredAt) - Date.parse(a.occurredAt);
  return byTime !== 0 ? byTime : Number(b.id) - Number(a.id);
}

function merge(current: Entry[], incoming: Entry[]): Entry[] {
  const byId = new Map(current.map((entry) => [entry.id, entry]));
  for (const entry of incoming) byId.set(entry.id, entry);
  return [...byId.values()].sort(newestFirst);
}

function reducer(state: State, action: Action): State {
  switch (action.type) {
    case "reset":
      return initial;
    case "loadingMore":
      return { ...state, loadingMore: true, error: null };
    case "error":
      // Without its first page the timeline is not ready: no live entries are shown (they
      // would stand alone above "the beginning of the timeline") until a retry loads it.
      return { ...state, ready: state.ready && !action.first, loadingMore: false, error: action.error };
    case "page":
      return {
        ...state,
        entries: merge(state.entries, action.entries),
        ready: true,
        loadingMore: false,
        hasNext: action.hasNext,
        endCursor: action.endCursor,
        error: null,
      };
    case "live": {
      const oldest = state.entries[state.entries.length - 1];
      // An entry older than everything loaded, while older pages exist, belongs to a
      // page not loaded yet: "Load older" brings it in order.
      if (state.hasNext && oldest && newestFirst(action.entry, oldest) > 0) return state;
      let entries = merge(state.entries, [action.entry]);
      let { hasNext, endCursor } = state;
      if (entries.length > MAX_ENTRIES) {
        entries = entries.slice(0, MAX_ENTRIES);
        hasNext = true;
        endCursor = entries[entries.length - 1]?.cursor ?? endCursor;
      }
      const live = new Set(state.live).add(action.entry.id);
      return { ...state, entries, live, hasNext, endCursor };
    }
  }
}

export function useLiveTimeline(filter: TimelineFilter, wanted = 50) {
  const client = useClient();
  const pageSize = useViewer().page(wanted);
  const [state, dispatch] = useReducer(reducer, initial);
  const restartKey = JSON.stringify(filter);
  const filterRef = useRef(filter);
  filterRef.current = filter;
  // The entry recorded last (highest id) among those seen: where a resume starts.
  const newest = useRef<{ id: number; cursor: string } | null>(null);
  const [reloads, reload] = useReducer((n: number) => n + 1, 0);
  const failures = useRef(0); // first pages failed in a row

  const note = useCallback((entries: { id: string; cursor: string }[]) => {
    for (const entry of entries) {
      const id = Number(entry.id);
      if (Number.isFinite(id) && (!newest.current || id > newest.current.id)) {
        newest.current = { id, cursor: entry.cursor };
      }
    }
  }, []);

  useEffect(() => {
    failures.current = 0; // a new filter starts its retries afresh
  }, [restartKey]);

  useEffect(() => {
    let cancelled = false;
    newest.current = null;
    dispatch({ type: "reset" });
    client
      .query(
        TimelineStartDocument,
        { filter: filterRef.current, first: pageSize },
        { requestPolicy: "network-only" },
      )
      .toPromise()
      .then((result) => {
        if (cancelled) return;
        if (result.error || !result.data) {
          if (result.error) dispatch({ type: "error", error: result.error, first: true });
          return;
        }
        failures.current = 0;
        const page = result.data.timeline;
        const entries = page.edges.map((edge) => edge.node);
        note(entries);
        note(result.data.newest.edges.map((edge) => edge.node));
        dispatch({
          type: "page",
          entries,
          hasNext: page.pageInfo.hasNextPage,
          endCursor: page.pageInfo.endCursor ?? null,
        });
      });
    return () => {
      cancelled = true;
    };
  }, [client, restartKey, pageSize, note, reloads]);

  // A first page that failed (the server down, say) is asked for again, 2 s later, then
  // waiting longer each time up to 15 s, until it loads: the page recovers by itself. Not
  // one the server refused for what was asked (a filter over its limits, say): the same
  // question gets the same answer, so it waits for the person (the error offers Retry).
  const refusedAsAsked = errorCodes(state.error ?? undefined).some((code) => ASKED_WRONG.has(code));
  const waitingForFirst = !state.ready && state.error !== null && !refusedAsAsked;
  useEffect(() => {
    if (!waitingForFirst) return;
    const wait = Math.min(2_000 * 2 ** failures.current++, 15_000);
    const timer = setTimeout(reload, wait);
    return () => clearTimeout(timer);
  }, [waitingForFirst]);

  const live = useLiveSubscription(restartKey, {
    document: TimelineLiveDocument,
    enabled: state.ready,
    variables: () => ({ filter: filterRef.current, after: newest.current?.cursor ?? null }),
    // Nothing seen yet (the workspace was empty): a resume would have no cursor to start
    // after and would miss what was committed during the drop, so start over instead.
    onStart: (resumed) => {
      if (resumed && !newest.current) reload();
    },
    onData: (data) => {
      note([data.timeline]);
      dispatch({ type: "live", entry: data.timeline });
    },
    // A resume from a cursor past the end of the timeline (the database restored from an
    // older backup, say) is refused: start over from the first page.
    onRefused: (errors, resumed) => {
      if (!resumed || !errors.some((e) => e.extensions?.code === "BAD_USER_INPUT")) return false;
      reload();
      return true;
    },
  });

  const loadMore = useCallback(async () => {
    if (!state.endCursor || state.loadingMore) return;
    dispatch({ type: "loadingMore" });
    const result = await client
      .query(
        TimelineDocument,
        { filter: filterRef.current, first: pageSize, after: state.endCursor },
        { requestPolicy: "network-only" },
      )
      .toPromise();
    if (result.error || !result.data) {
      if (result.error) dispatch({ type: "error", error: result.error, first: false });
      return;
    }
    const page = result.data.timeline;
    const entries = page.edges.map((edge) => edge.node);
    note(entries);
    dispatch({
      type: "page",
      entries,
      hasNext: page.pageInfo.hasNextPage,
      endCursor: page.pageInfo.endCursor ?? null,
    });
  }, [client, note, pageSize, state.endCursor, state.loadingMore]);

  return { ...state, loadMore, reload, liveProblem: live.problem };
}
