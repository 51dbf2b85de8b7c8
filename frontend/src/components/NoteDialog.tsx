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
  placeholder,
  busy,
  error,
  onSubmit,
  onClose,
}: {
  open: boolean;
  title: string;
  description?: string;
  confirm: string;
  tone?: "primary" | "danger" | "success";
  required?: boolean;
  placeholder?: string;
  busy?: boolean;
  error?: string | null;
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
    if (missing || busy) return;
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
            autoFocus
            placeholder={placeholder}
            aria-invalid={touched && missing}
            aria-describedby={touched && missing ? "note-missing" : undefined}
            onChange={(event) => setNote(event.target.value)}
          />
        </label>
        {touched && missing ? (
          <p id="note-missing" className="field-error">
            Say why, so the agent and your colleagues know.
          </p>
        ) : null}
        {error ? (
          <p className="field-error" role="alert">
            {error}
          </p>
        ) : null}
        <div className="form-actions">
          <button type="button" className="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className={`button button-${tone}`} disabled={busy}>
            {busy ? "Working…" : confirm}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
