// The two GraphQL transports, both carrying the signed-in key:
// urql over HTTP for queries and mutations, graphql-ws for subscriptions.
import { Client, cacheExchange, fetchExchange, mapExchange, type CombinedError } from "urql";
import { createClient as createWsClient, type Client as WsClient } from "graphql-ws";
import { connection } from "./connection";

export const GRAPHQL_PATH = "/graphql";

// How often the socket is pinged, and how long a pong may take before the socket is
// considered dead (a dropped network often closes nothing on its own).
const PING_EVERY_MS = 10_000;
const PONG_WITHIN_MS = 5_000;

export function errorCodes(error: CombinedError | undefined): string[] {
  return (error?.graphQLErrors ?? []).map((e) => String(e.extensions?.code ?? ""));
}

export function makeHttpClient(key: string, onUnauthenticated: () => void): Client {
  return new Client({
    url: GRAPHQL_PATH,
    preferGetMethod: false,
    requestPolicy: "cache-and-network",
    fetchOptions: () => ({ headers: { Authorization: `Bearer ${key}` } }),
    exchanges: [
      cacheExchange,
      mapExchange({
        onError(error) {
          const status = (error.response as Response | undefined)?.status;
          if (status === 401 || errorCodes(error).includes("UNAUTHENTICATED")) onUnauthenticated();
        },
      }),
      fetchExchange,
    ],
  });
}

function wsUrl(): string {
  const url = new URL(GRAPHQL_PATH, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/**
 * One lazy WebSocket for every live view. It never retries on its own: each subscription
 * resumes itself (see live.ts), so it can ask for what it missed with `after`.
 */
export function makeWsClient(key: string): WsClient {
  let socket: WebSocket | null = null;
  let pongTimer: ReturnType<typeof setTimeout> | undefined;
  return createWsClient({
    url: wsUrl(),
    connectionParams: { Authorization: `Bearer ${key}` },
    lazy: true,
    lazyCloseTimeout: 2_000,
    retryAttempts: 0,
    keepAlive: PING_EVERY_MS,
    on: {
      connecting: () => connection.socket("connecting"),
      opened: (opened) => {
        socket = opened as WebSocket;
      },
      connected: () => connection.socket("connected"),
      closed: (event) => {
        clearTimeout(pongTimer);
        socket = null;
        const close = event as CloseEvent | undefined;
        connection.socket("closed", close?.code, close?.reason);
      },
      ping: (received) => {
        if (received) return;
        clearTimeout(pongTimer);
        pongTimer = setTimeout(() => {
          if (socket?.readyState === WebSocket.OPEN) socket.close(4408, "No pong from the server");
        }, PONG_WITHIN_MS);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
    },
  });
}
