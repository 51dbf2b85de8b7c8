// Subscriptions that resume themselves after a drop, asking for what they missed.
import { useEffect, useRef, useState } from "react";
import { print, type GraphQLFormattedError } from "graphql";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { useWs } from "../auth";
import { connection } from "./connection";

// Close codes after which retrying cannot help (graphql-transport-ws): bad request,
// unauthorized, forbidden (the key was refused in connection_init), wrong subprotocol.
const FATAL_CLOSE_CODES = new Set([4400, 4401, 4403, 4406]);
const FATAL_ERROR_CODES = new Set([
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "BAD_USER_INPUT",
  "GRAPHQL_VALIDATION_FAILED",
]);
// The server ends a subscription that fell behind, or all of them when its bus drops:
// resume at once with `after`, nothing to tell the user.
const RESUME_CODES = new Set(["SUBSCRIBER_LAGGED", "BUS_UNAVAILABLE"]);
const MAX_WAIT_MS = 15_000;
const ANSWERED_WAIT_MS = 10_000;

export interface LiveOptions<TData, TVars> {
  document: TypedDocumentNode<TData, TVars>;
  /** The variables of each (re)subscription: a resume passes the last cursor it saw. */
  variables: () => TVars;
  onData: (data: TData) => void;
  /** Before every (re)subscription; `resumed` is false the first time. */
  onStart?: (resumed: boolean) => void;
  /**
   * The server answered a (re)subscription with errors: true if the caller handles them
   * (it starts over, say), so the subscription is not asked for again as it was.
   */
  onRefused?: (errors: readonly GraphQLFormattedError[], resumed: boolean) => boolean;
  enabled?: boolean;
}

export interface LiveStatus {
  /** Why the subscription stopped for good, if it did. */
  problem: string | null;
}

interface Failure {
  message: string;
  /** Retrying cannot help (refused key, missing scope). */
  fatal: boolean;
  /** The server answered with errors: retry, but slowly, and say so meanwhile. */
  answered: boolean;
}

function describe(error: unknown): Failure {
  if (Array.isArray(error)) {
    const errors = error as GraphQLFormattedError[];
    const codes = errors.map((e) => String(e.extensions?.code ?? ""));
    return {
      message: errors.map((e) => e.message).join("; ") || "The subscription failed.",
      fatal: codes.some((code) => FATAL_ERROR_CODES.has(code)),
      answered: !codes.every((code) => RESUME_CODES.has(code)),
    };
  }
  if (typeof CloseEvent !== "undefined" && error instanceof CloseEvent) {
    const fatal = FATAL_CLOSE_CODES.has(error.code);
    const message = fatal
      ? `The server refused the live connection (${error.code}${error.reason ? ` ${error.reason}` : ""}).`
      : `Connection closed (${error.code}).`;
    return { message, fatal, answered: false };
  }
  const message = error instanceof Error ? error.message : "Connection lost.";
  return { message, fatal: false, answered: false };
}

let nextId = 0;

/**
 * Subscribe while mounted; on a drop, wait (exponential backoff, or until the browser is
 * back online, the tab is shown again or the person asks) and subscribe again with fresh
 * variables. `restartKey` starts it over.
 */
export function useLiveSubscription<TData, TVars>(
  restartKey: string,
  options: LiveOptions<TData, TVars>,
): LiveStatus {
  const ws = useWs();
  const latest = useRef(options);
  latest.current = options;
  const [problem, setProblem] = useState<string | null>(null);
  const enabled = options.enabled ?? true;
  // Failed tries in a row, kept while the view is switched off and on again (a timeline
  // starting over from its first page), so that a view failing each time still backs off.
  const failures = useRef({ restartKey, count: 0 });

  useEffect(() => {
    if (!enabled) return;
    const id = `live-${++nextId}`;
    let disposed = false;
    if (failures.current.restartKey !== restartKey) failures.current = { restartKey, count: 0 };
    const tries = failures.current;
    let stopped = false; // for good: refused, or the caller handled a refusal
    let started = 0;
    let unsubscribe: (() => void) | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setProblem(null);

    const start = (): void => {
      if (disposed) return;
      clearTimeout(timer);
      connection.scheduled(id, null);
      const { document, variables, onStart } = latest.current;
      // Counted apart from the call: `onStart?.(…)` evaluates nothing without an onStart.
      const resumed = started++ > 0;
      onStart?.(resumed);
      let ended = false;
      const refused = (errors: readonly GraphQLFormattedError[]): boolean =>
        latest.current.onRefused?.(errors, resumed) ?? false;
      const end = (): void => {
        ended = true;
        unsubscribe?.();
        unsubscribe = null;
      };
      unsubscribe = ws.subscribe<TData>(
        { query: print(document), variables: variables() as Record<string, unknown> },
        {
          next: (result) => {
            if (disposed || ended) return;
            if (result.data) {
              tries.count = 0;
              setProblem(null);
              latest.current.onData(result.data as TData);
            } else if (result.errors?.length) {
              if (refused(result.errors)) {
                stopped = true;
                end();
                return;
              }
              setProblem(describe(result.errors).message);
            }
          },
          error: (error) => {
            if (disposed || ended) return;
            end();
            if (Array.isArray(error) && refused(error as GraphQLFormattedError[])) {
              stopped = true;
              return;
            }
            const failure = describe(error);
            if (failure.answered || failure.fatal) setProblem(failure.message);
            if (failure.fatal) {
              stopped = true;
              connection.failed(failure.message);
              return;
            }
            retry(failure.answered ? ANSWERED_WAIT_MS : undefined);
          },
          complete: () => {
            // The server ends a subscription that fell behind or lost its bus: resume.
            if (disposed || ended) return;
            end();
            retry();
          },
        },
      );
    };

    const retry = (minimum = 0): void => {
      if (disposed) return;
      const base = Math.max(minimum, Math.min(MAX_WAIT_MS, 1_000 * 2 ** tries.count));
      const wait = Math.round(base * (0.75 + Math.random() * 0.5));
      tries.count += 1;
      connection.scheduled(id, Date.now() + wait);
      timer = setTimeout(start, wait);
    };

    const offConnected = ws.on("connected", () => {
      tries.count = 0;
    });
    // Back online, or asked to (the badge's button, the tab shown again): resume now, unless
    // it stopped for good.
    const resumeNow = (): void => {
      if (!unsubscribe && !disposed && !stopped) start();
    };
    window.addEventListener("online", resumeNow);
    const offReconnectNow = connection.onReconnectNow(resumeNow);
    start();

    return () => {
      disposed = true;
      clearTimeout(timer);
      connection.scheduled(id, null);
      offConnected();
      offReconnectNow();
      window.removeEventListener("online", resumeNow);
      unsubscribe?.();
    };
  }, [ws, restartKey, enabled]);

  return { problem };
}
