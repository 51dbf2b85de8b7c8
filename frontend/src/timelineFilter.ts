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
  };
}

export function writeFilter(filter: FilterState, keep?: URLSearchParams): URLSearchParams {
  const params = new URLSearchParams();
  keep?.forEach((value, key) => {
    if (![...Object.values(PARAMS), "match", "q"].includes(key)) params.append(key, value);
  });
  for (const kind of filter.kinds) params.append(PARAMS.kinds, kind);
  for (const service of filter.services) params.append(PARAMS.services, service);
  for (const env of filter.environments) params.append(PARAMS.environments, env);
  for (const label of filter.labels) params.append(PARAMS.labels, label);
  if (filter.matchAll && filter.labels.length) params.set("match", "all");
  if (filter.text) params.set("q", filter.text);
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
  };
}

export function activeCount(filter: FilterState): number {
  return (
    filter.kinds.length +
    filter.services.length +
    filter.environments.length +
    filter.labels.length +
    (filter.text ? 1 : 0)
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
