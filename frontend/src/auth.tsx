// Signing in with an API key: kept in localStorage, checked against `viewer` first.
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { Provider as UrqlProvider } from "urql";
import type { Client as WsClient } from "graphql-ws";
import { GRAPHQL_PATH, makeHttpClient, makeWsClient } from "./api/client";
import { connection } from "./api/connection";

const STORAGE_KEY = "opsgraph.apiKey";

interface AuthValue {
  apiKey: string | null;
  /** Why the last session ended, shown on the sign-in screen. */
  notice: string | null;
  signIn: (key: string) => Promise<void>;
  signOut: (notice?: string) => void;
}

const AuthContext = createContext<AuthValue | null>(null);
const disposals = new WeakMap<object, ReturnType<typeof setTimeout>>();
const WsContext = createContext<WsClient | null>(null);

function readKey(): string | null {
  try {
    return window.localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

/** Ask the server who this key is; throws a readable message when it is refused. */
async function checkKey(key: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(GRAPHQL_PATH, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify({ query: "{ viewer { keyId } }" }),
    });
  } catch {
    throw new Error("Cannot reach the Opsgraph server. Is it running?");
  }
  let body: { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };
  try {
    body = await response.json();
  } catch {
    throw new Error(`The server answered ${response.status} ${response.statusText}.`);
  }
  const first = body.errors?.[0];
  if (first) {
    throw new Error(
      first.extensions?.code === "UNAUTHENTICATED" ? "That API key is unknown or revoked." : first.message,
    );
  }
  if (!response.ok) throw new Error(`The server answered ${response.status}.`);
}

const SIGNED_OUT_ELSEWHERE = "You signed out in another tab.";
const REASON_KEY = "opsgraph.signOutReason"; // why the last sign-out happened, for other tabs

export function AuthProvider({ children }: { children: ReactNode }) {
  const [apiKey, setApiKey] = useState<string | null>(readKey);
  const [notice, setNotice] = useState<string | null>(null);

  const signOut = useCallback((why?: string) => {
    // The other tabs show why too (they see the key go; `why` goes first).
    if (why) window.localStorage.setItem(REASON_KEY, why);
    else window.localStorage.removeItem(REASON_KEY);
    window.localStorage.removeItem(STORAGE_KEY);
    setNotice(why ?? null);
    setApiKey(null);
  }, []);

  const signIn = useCallback(async (raw: string) => {
    const key = raw.trim();
    if (!key) throw new Error("Paste an API key.");
    // A key is printable ASCII. Anything else (a zero-width space picked up with a copy from
    // a chat, a look-alike letter) cannot go in a header: fetch threw, read as "cannot reach".
    if (/[^\x21-\x7e]/.test(key)) {
      throw new Error(
        "That API key holds a character no key has (an invisible or non-Latin one, often " +
          "picked up when copying). Paste it again, or type it.",
      );
    }
    await checkKey(key);
    window.localStorage.removeItem(REASON_KEY);
    window.localStorage.setItem(STORAGE_KEY, key);
    setNotice(null);
    setApiKey(key);
  }, []);

  // Signing in or out in another tab does the same here.
  useEffect(() => {
    const onStorage = (event: StorageEvent): void => {
      if (event.key !== STORAGE_KEY) return;
      setNotice(event.newValue ? null : (window.localStorage.getItem(REASON_KEY) ?? SIGNED_OUT_ELSEWHERE));
      setApiKey(event.newValue);
    };
    window.addEventListener("storage", onStorage);
    return () => window.removeEventListener("storage", onStorage);
  }, []);

  const value = useMemo(() => ({ apiKey, notice, signIn, signOut }), [apiKey, notice, signIn, signOut]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

/** The GraphQL clients of the signed-in key; rebuilt when the key changes. */
export function ClientsProvider({ apiKey, children }: { apiKey: string; children: ReactNode }) {
  const { signOut } = useAuth();
  const clients = useMemo(() => {
    const expired = (): void => {
      const stored = window.localStorage.getItem(STORAGE_KEY);
      // Another tab signed in with another key meanwhile: this client is stale, and the
      // storage event brings that key here; signing out would sign every tab out.
      if (stored !== null && stored !== apiKey) return;
      if (stored === null) signOut(window.localStorage.getItem(REASON_KEY) ?? SIGNED_OUT_ELSEWHERE);
      else signOut("Your API key was refused (revoked?). Sign in again.");
    };
    return { http: makeHttpClient(apiKey, expired), ws: makeWsClient(apiKey) };
  }, [apiKey, signOut]);

  useEffect(() => {
    // React's StrictMode runs this twice in development: keep clients that come right back.
    clearTimeout(disposals.get(clients));
    return () => {
      disposals.set(
        clients,
        setTimeout(() => {
          void clients.ws.dispose();
          connection.reset();
        }, 0),
      );
    };
  }, [clients]);

  return (
    <UrqlProvider value={clients.http}>
      <WsContext.Provider value={clients.ws}>{children}</WsContext.Provider>
    </UrqlProvider>
  );
}

export function useAuth(): AuthValue {
  const value = useContext(AuthContext);
  if (!value) throw new Error("useAuth outside AuthProvider");
  return value;
}

export function useWs(): WsClient {
  const value = useContext(WsContext);
  if (!value) throw new Error("useWs outside ClientsProvider");
  return value;
}
