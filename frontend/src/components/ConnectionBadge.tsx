// The live connection's state, in the header.
import { connection, useConnection } from "../api/connection";
import { duration, useNow } from "../format";

export function ConnectionBadge() {
  const state = useConnection();
  const now = useNow(1_000);
  let tone = "idle";
  let text = "Not live";
  let title = "No live view is open.";
  let waiting = false;
  if (!state.online) {
    tone = "down";
    text = "Offline";
    title = "The browser is offline; live views resume when it is back.";
  } else if (state.problem) {
    tone = "down";
    text = "Disconnected";
    title = state.problem;
  } else if (state.socket === "connected") {
    tone = "up";
    text = "Live";
    title = "Receiving updates as they happen.";
  } else if (state.retryAt !== null) {
    tone = "wait";
    waiting = true;
    const left = Math.max(0, state.retryAt - now);
    text = left > 900 ? `Reconnecting in ${duration(left)}` : "Reconnecting…";
    title = `The live connection dropped${state.lastClose ? ` (${state.lastClose})` : ""}; missed entries are filled in on resume.`;
  } else if (state.socket === "connecting") {
    tone = "wait";
    text = "Connecting…";
    title = "Opening the live connection.";
  }
  return (
    <>
      <span className={`conn conn-${tone}`} role="status" aria-live="polite" title={title} data-state={tone}>
        <span className="conn-dot" aria-hidden="true" />
        {text}
      </span>
      {waiting ? (
        <button type="button" className="button button-small" onClick={connection.reconnectNow}>
          Reconnect now
        </button>
      ) : null}
    </>
  );
}
