// Loading, empty and error states, the same on every page.
import type { ReactNode } from "react";
import type { CombinedError } from "urql";

export function Loading({ what = "Loading" }: { what?: string }) {
  return (
    <div className="state state-loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" />
      {what}…
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="state state-empty">
      <p className="state-title">{title}</p>
      {children ? <div className="state-hint">{children}</div> : null}
    </div>
  );
}

/** A readable message for a failed query or mutation. */
export function errorMessage(error: CombinedError | Error | string): string {
  if (typeof error === "string") return error;
  if ("graphQLErrors" in error) {
    if (error.networkError) return "Cannot reach the Opsgraph server. Check your connection and retry.";
    const messages = error.graphQLErrors.map((e) => e.message);
    if (messages.length) return messages.join(" ");
  }
  return error.message.replace(/^\[\w+\]\s*/, "");
}

export function ErrorNote({ error, retry }: { error: CombinedError | Error | string; retry?: () => void }) {
  return (
    <div className="state state-error" role="alert">
      <p>{errorMessage(error)}</p>
      {retry ? (
        <button type="button" className="button" onClick={retry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}

/** A refetch failed while the page still shows what it loaded before (see `useKept`). */
export function KeptNote({ error, retry }: { error: CombinedError; retry: () => void }) {
  return <ErrorNote error={`${errorMessage(error)} What is shown is from before.`} retry={retry} />;
}
