// The state of the live connection, as the header badge shows it.
import { useSyncExternalStore } from "react";

export type SocketState = "idle" | "connecting" | "connected" | "closed";

export interface ConnectionSnapshot {
  socket: SocketState;
  online: boolean;
  /** When the earliest scheduled resume happens (ms since epoch), if one is waiting. */
  retryAt: number | null;
  /** A problem retrying will not fix (the key was refused, a query is invalid). */
  problem: string | null;
  lastClose: string | null;
}

type Listener = () => void;

class ConnectionStore {
  private snapshot: ConnectionSnapshot = {
    socket: "idle",
    online: typeof navigator === "undefined" ? true : navigator.onLine,
    retryAt: null,
    problem: null,
    lastClose: null,
  };
  private listeners = new Set<Listener>();
  private retries = new Map<string, number>();
  private waiting = new Set<Listener>();

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  get = (): ConnectionSnapshot => this.snapshot;

  private set(patch: Partial<ConnectionSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...patch };
    this.listeners.forEach((listener) => listener());
  }

  socket(state: SocketState, code?: number, reason?: string): void {
    const patch: Partial<ConnectionSnapshot> = { socket: state };
    if (state === "connected") patch.problem = null;
    if (state === "closed" && code !== undefined && code !== 1000) {
      patch.lastClose = reason ? `${code} ${reason}` : String(code);
    }
    this.set(patch);
  }

  online(value: boolean): void {
    this.set({ online: value });
  }

  scheduled(id: string, at: number | null): void {
    if (at === null) this.retries.delete(id);
    else this.retries.set(id, at);
    const next = this.retries.size ? Math.min(...this.retries.values()) : null;
    this.set({ retryAt: next });
  }

  /** Each live view waiting to resume calls `resume` on `reconnectNow()`. */
  onReconnectNow(resume: Listener): () => void {
    this.waiting.add(resume);
    return () => this.waiting.delete(resume);
  }

  /** Resume every waiting live view now instead of at its scheduled time. */
  reconnectNow = (): void => {
    if (this.retries.size) this.waiting.forEach((resume) => resume());
  };

  failed(problem: string | null): void {
    this.set({ problem });
  }

  reset(): void {
    this.retries.clear();
    this.set({ socket: "idle", retryAt: null, problem: null, lastClose: null });
  }
}

export const connection = new ConnectionStore();

if (typeof window !== "undefined") {
  window.addEventListener("online", () => connection.online(true));
  window.addEventListener("offline", () => connection.online(false));
  // Someone coming back to the tab wants it live now, not after the rest of a backoff.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") connection.reconnectNow();
  });
}

export function useConnection(): ConnectionSnapshot {
  return useSyncExternalStore(connection.subscribe, connection.get);
}
