// A page's query, whose last loaded data is kept while a later fetch of it fails (the
// server down, say): the page goes on showing it, says it is from before, and its live
// refresh stays on, so it recovers by itself when the server is back.
import { useRef } from "react";
import { useQuery, type AnyVariables, type UseQueryArgs, type UseQueryState } from "urql";

export type KeptState<Data, Variables extends AnyVariables> = UseQueryState<Data, Variables> & {
  /** `data` is the last loaded for these variables, not this fetch's (which failed). */
  kept: boolean;
};

/** `useQuery`, with `data` kept through a failed fetch. Only data loaded for the same
 * variables is kept: urql goes on giving the previous variables' data while the new ones
 * load, which is never kept for them. */
export function useKeptQuery<Data, Variables extends AnyVariables>(
  args: UseQueryArgs<Variables, Data>,
): [KeptState<Data, Variables>, ReturnType<typeof useQuery<Data, Variables>>[1]] {
  const [result, refetch] = useQuery<Data, Variables>(args);
  const key = JSON.stringify(args.variables ?? {});
  const last = useRef<{ key: string; data: Data } | null>(null);
  const own = result.operation !== undefined && JSON.stringify(result.operation.variables ?? {}) === key;
  if (result.data !== undefined && own) last.current = { key, data: result.data };
  const kept = result.data === undefined && last.current?.key === key;
  return [{ ...result, data: kept ? last.current?.data : result.data, kept }, refetch];
}
