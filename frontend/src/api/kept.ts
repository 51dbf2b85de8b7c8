// A page's last loaded data, kept while a later fetch of it fails (the server down, say):
// the page goes on showing it, with the error beside it, and its live refresh stays on,
// so it recovers by itself when the server is back.
import { useRef } from "react";

/** `data`, or while it is missing the last `data` loaded for the same `key` (the query's
 * variables: another incident's or filter's data is never shown). */
export function useKept<T>(data: T | undefined, key: string): T | undefined {
  const kept = useRef<{ key: string; data: T } | null>(null);
  if (data !== undefined) kept.current = { key, data };
  else if (kept.current !== null && kept.current.key !== key) kept.current = null;
  return kept.current?.data;
}
