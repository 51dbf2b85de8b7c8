// Confirm an action with a note (acknowledge, resolve, approve, reject).
import { useEffect, useState, type FormEvent } from "react";
import { Dialog } from "./Dialog";

export function NoteDialog({
  open,
  title,
  description,
  confirm,
  tone = "primary",
  required = false,
  missingHint = "Write a note first.",
  placeholder,
  busy,
  error,
  settled = false,
  onSubmit,
  onClose,
}: {
  open: boolean;
  title: string;
  description?: string;
  confirm: string;
  tone?: "primary" | "danger" | "success";
  required?: boolean;
  /** What to say when a required note is empty. */
  missingHint?: string;
  placeholder?: string;
  busy?: boolean;
  error?: string | null;
  /** Nothing left to do (the server said the matter was settled meanwhile): only Close. */
  settled?: boolean;
  onSubmit: (note: string) => void;
  onClose: () => void;
}) {
  const [note, setNote] = useState("");
  const [touched, setTouched] = useState(false);
  useEffect(() => {
    if (open) {
      setNote("");
      setTouched(false);
    }
  }, [open]);
  const missing = required && !note.trim();
  const submit = (event: FormEvent): void => {
    event.preventDefault();
    setTouched(true);
    if (missing || busy || settled) return;
    onSubmit(note.trim());
  };
  return (
    <Dialog open={open} onClose={onClose} title={title}>
      <form onSubmit={submit} className="note-form" noValidate>
        {description ? <p>{description}</p> : null}
        <label className="field">
          <span>{required ? "Comment (required)" : "Note (optional)"}</span>
          <textarea
            name="note"
            rows={3}
            value={note}
            data-autofocus
            placeholder={placeholder}
            aria-invalid={touched && missing}
            aria-describedby={touched && missing ? "note-missing" : undefined}
            onChange={(event) => setNote(event.target.value)}
          />
        </label>
        {touched && missing ? (
          <p id="note-missing" className="field-error">
            {missingHint}
          </p>
        ) : null}
        {error ? (
          <p className="field-error" role="alert">
            {error}
          </p>
        ) : null}
        <div className="form-actions">
          <button type="button" className="button" onClick={onClose}>
            {settled ? "Close" : "Cancel"}
          </button>
          {settled ? null : (
            <button type="submit" className={`button button-${tone}`} disabled={busy}>
              {busy ? "Working…" : confirm}
            </button>
          )}
        </div>
      </form>
    </Dialog>
  );
}
