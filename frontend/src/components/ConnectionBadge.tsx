// The live connection's state, in the header.
import { useRef } from "react";
import { connection, useConnection } from "../api/connection";
import { duration, useNow } from "../format";

export function ConnectionBadge() {
  const state = useConnection();
  const now = useNow(1_000);
  const badge = useRef<HTMLSpanElement>(null);
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
  // Focus would be lost with the button, which goes as the try begins: it moves to the badge.
  const reconnect = (): void => {
    connection.reconnectNow();
    badge.current?.focus();
  };
  // Waiting and each try alike are "Reconnecting" once a connection dropped: not a word
  // per try, nor per second counted down.
  const spoken = tone === "wait" && state.lastClose !== null ? "Reconnecting" : text;
  return (
    <>
      <span className={`conn conn-${tone}`} title={title} data-state={tone} tabIndex={-1} ref={badge}>
        <span className="conn-dot" aria-hidden="true" />
        {text}
      </span>
      {/* What a screen reader is told: the state as it changes, not each second counted down. */}
      <span className="visually-hidden" role="status" aria-live="polite">
        {spoken}
      </span>
      {waiting ? (
        <button type="button" className="button button-small" onClick={reconnect}>
          Reconnect now
        </button>
      ) : null}
    </>
  );
}
