// The timeline filter lives in the URL, so a filtered view is a shareable link.
import { useCallback, useMemo } from "react";
import { useSearchParams } from "react-router";
import type { TimelineFilter, TimelineKind } from "./gql/graphql";
import { KINDS } from "./kinds";

export interface FilterState {
  kinds: TimelineKind[];
  services: string[];
  environments: string[];
  labels: string[];
  matchAll: boolean;
  text: string;
  /** ISO 8601 instants bounding when entries occurred ("" for no bound). */
  since: string;
  until: string;
}

export const NO_FILTER: FilterState = {
  kinds: [],
  services: [],
  environments: [],
  labels: [],
  matchAll: false,
  text: "",
  since: "",
  until: "",
};

/** An instant from the URL (any form `Date` reads, `Z` or an offset) as ISO 8601 in UTC. */
function instant(value: string | null): string {
  const time = value ? Date.parse(value) : NaN;
  return Number.isFinite(time) ? new Date(time).toISOString() : "";
}

/** An instant as a `datetime-local` input shows it: the browser's local time, to the minute. */
export function toLocalInput(iso: string): string {
  if (!iso) return "";
  const date = new Date(iso);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/** What a `datetime-local` input holds (local time, no zone), as an ISO instant. */
export function fromLocalInput(value: string): string {
  return value ? instant(value) : "";
}

const PARAMS = { kinds: "kind", services: "service", environments: "env", labels: "label" } as const;

/** Repeated parameters and comma-separated values both work: ?label=a&label=b or ?label=a,b. */
function many(params: URLSearchParams, name: string): string[] {
  const values = params
    .getAll(name)
    .flatMap((value) => value.split(","))
    .map((value) => value.trim())
    .filter(Boolean);
  return [...new Set(values)];
}

export function parseFilter(params: URLSearchParams): FilterState {
  return {
    kinds: many(params, PARAMS.kinds)
      .map((kind) => kind.toUpperCase())
      .filter((kind): kind is TimelineKind => kind in KINDS),
    services: many(params, PARAMS.services),
    environments: many(params, PARAMS.environments),
    labels: many(params, PARAMS.labels),
    matchAll: params.get("match") === "all",
    text: params.get("q")?.trim() ?? "",
    since: instant(params.get("since")),
    until: instant(params.get("until")),
  };
}

export function writeFilter(filter: FilterState, keep?: URLSearchParams): URLSearchParams {
  const params = new URLSearchParams();
  keep?.forEach((value, key) => {
    if (![...Object.values(PARAMS), "match", "q", "since", "until"].includes(key)) params.append(key, value);
  });
  for (const kind of filter.kinds) params.append(PARAMS.kinds, kind);
  for (const service of filter.services) params.append(PARAMS.services, service);
  for (const env of filter.environments) params.append(PARAMS.environments, env);
  for (const label of filter.labels) params.append(PARAMS.labels, label);
  if (filter.matchAll) params.set("match", "all"); // kept without labels: ticked before typing them
  if (filter.text) params.set("q", filter.text);
  if (filter.since) params.set("since", filter.since);
  if (filter.until) params.set("until", filter.until);
  return params;
}

/** The GraphQL input for a filter (null fields match everything). */
export function toInput(filter: FilterState): TimelineFilter {
  return {
    kinds: filter.kinds.length ? filter.kinds : null,
    services: filter.services.length ? filter.services : null,
    environments: filter.environments.length ? filter.environments : null,
    labels: filter.labels.length ? filter.labels : null,
    labelsMatch: filter.matchAll ? "ALL" : "ANY",
    text: filter.text || null,
    since: filter.since || null,
    until: filter.until || null,
  };
}

export function activeCount(filter: FilterState): number {
  return (
    filter.kinds.length +
    filter.services.length +
    filter.environments.length +
    filter.labels.length +
    (filter.text ? 1 : 0) +
    (filter.since ? 1 : 0) +
    (filter.until ? 1 : 0)
  );
}

export function useTimelineFilter(): [FilterState, (next: FilterState) => void] {
  const [params, setParams] = useSearchParams();
  const filter = useMemo(() => parseFilter(params), [params]);
  const setFilter = useCallback(
    (next: FilterState) => setParams((current) => writeFilter(next, current), { replace: true }),
    [setParams],
  );
  return [filter, setFilter];
}
