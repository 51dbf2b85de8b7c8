// Keep a page's query fresh: refetch when a matching timeline entry is committed
// (and after every resume, for whatever happened while the connection was down).
import { useEffect, useRef } from "react";
import { graphql } from "../gql";
import type { TimelineFilter } from "../gql/graphql";
import { useLiveSubscription } from "./live";

const TimelinePingDocument = graphql(`
  subscription TimelinePing($filter: TimelineFilter, $after: String) {
    timeline(filter: $filter, after: $after) {
      id
      kind
    }
  }
`);

const SETTLE_MS = 250;

export function useRefreshOn(filter: TimelineFilter, refetch: () => void, enabled = true): void {
  const refetchRef = useRef(refetch);
  refetchRef.current = refetch;
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const soon = (): void => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => refetchRef.current(), SETTLE_MS);
  };
  useEffect(() => () => clearTimeout(timer.current), []);
  useLiveSubscription(`refresh:${JSON.stringify(filter)}`, {
    document: TimelinePingDocument,
    enabled,
    variables: () => ({ filter, after: null }),
    onStart: (resumed) => {
      if (resumed) soon();
    },
    onData: soon,
  });
}

export const INCIDENT_KINDS = [
  "INCIDENT_TRIGGERED",
  "INCIDENT_UPDATED",
  "INCIDENT_ACKNOWLEDGED",
  "INCIDENT_RESOLVED",
  "INCIDENT_ANNOTATED",
] as const;

export const AGENT_KINDS = [
  "RUN_STARTED",
  "RUN_COMPLETED",
  "RUN_FAILED",
  "TOOL_CALLED",
  "TOOL_COMPLETED",
  "TOOL_FAILED",
  "APPROVAL_REQUESTED",
  "APPROVAL_DECIDED",
  "APPROVAL_EXPIRED",
  "POLICY_VIOLATION",
] as const;
