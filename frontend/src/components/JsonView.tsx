// JSON, indented and coloured by token, with a copy button.
import { useState, type ReactNode } from "react";

const TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;

function highlight(text: string): ReactNode[] {
  const out: ReactNode[] = [];
  let last = 0;
  let index = 0;
  for (const match of text.matchAll(TOKEN)) {
    const at = match.index ?? 0;
    if (at > last) out.push(text.slice(last, at));
    const [whole, string, colon, literal, number] = match;
    if (string !== undefined) {
      out.push(
        <span key={index++} className={colon ? "json-key" : "json-string"}>
          {string}
        </span>,
      );
      if (colon) out.push(colon);
    } else if (literal !== undefined) {
      out.push(
        <span key={index++} className="json-literal">
          {literal}
        </span>,
      );
    } else if (number !== undefined) {
      out.push(
        <span key={index++} className="json-number">
          {number}
        </span>,
      );
    } else {
      out.push(whole);
    }
    last = at + whole.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

export function JsonView({ value, label }: { value: unknown; label?: string }) {
  const [copied, setCopied] = useState(false);
  if (value === undefined || value === null) return <p className="muted">—</p>;
  if (typeof value === "object" && Object.keys(value as object).length === 0) {
    return <p className="muted">{Array.isArray(value) ? "[] (empty)" : "{} (empty)"}</p>;
  }
  const text = JSON.stringify(value, null, 2);
  const copy = (): void => {
    void navigator.clipboard?.writeText(text).then(
      () => {
        setCopied(true);
        setTimeout(() => setCopied(false), 1_500);
      },
      () => undefined,
    );
  };
  return (
    <div className="json">
      <button type="button" className="json-copy" onClick={copy} aria-label={`Copy ${label ?? "JSON"}`}>
        {copied ? "Copied" : "Copy"}
      </button>
      <pre aria-label={label}>{highlight(text)}</pre>
    </div>
  );
}
