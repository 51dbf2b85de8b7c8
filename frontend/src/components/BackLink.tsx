// The way back from a detail page to the list it was opened from, with that list's tab
// and filters (kept in the history entry's state by the list's links), else the bare list.
import { Link, useLocation } from "react-router";

interface From {
  from?: string;
}

/** The state a list's link to a detail page carries: where to come back to. */
export function useFromHere(): From {
  const { pathname, search } = useLocation();
  return { from: pathname + search };
}

export function BackLink({ to, label }: { to: string; label: string }) {
  const from = (useLocation().state as From | null)?.from;
  const back = from && (from === to || from.startsWith(`${to}?`)) ? from : to;
  return <Link to={back}>← {label}</Link>;
}
