import { useState, type FormEvent } from "react";
import { useAuth } from "../auth";
import { useTitle } from "../title";

export function SignIn() {
  useTitle("Sign in");
  const { signIn, notice } = useAuth();
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent): Promise<void> => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(key);
    } catch (caught) {
      setError(caught instanceof Error ? caught.message : String(caught));
      setBusy(false);
    }
  };

  return (
    <main className="signin" id="main">
      <form className="signin-card" onSubmit={submit}>
        <h1>
          <span className="brand-mark" aria-hidden="true" />
          Opsgraph
        </h1>
        <p className="muted">What changed, what broke, and what your agents are about to do.</p>
        {notice ? (
          <p className="notice" role="status">
            {notice}
          </p>
        ) : null}
        <label className="field">
          <span>API key</span>
          <input
            name="apiKey"
            type="password"
            autoComplete="off"
            spellCheck={false}
            placeholder="og_…"
            value={key}
            autoFocus
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "signin-error" : "signin-hint"}
            onChange={(event) => setKey(event.target.value)}
          />
        </label>
        {error ? (
          <p className="field-error" id="signin-error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" className="button button-primary button-wide" disabled={busy || !key.trim()}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        <p className="hint" id="signin-hint">
          The first <code>make run</code> prints an admin key. For a personal one:{" "}
          <code>.venv/bin/opsgraph keys create --name you --scopes read,approvals:decide</code>. The key stays
          in this browser until you sign out.
        </p>
      </form>
    </main>
  );
}
