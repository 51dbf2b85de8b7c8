import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a server started with `make run` (127.0.0.1:8000).
const api = process.env.OPSGRAPH_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", sourcemap: true, chunkSizeWarningLimit: 800 },
  server: {
    proxy: {
      "/graphql": { target: api, ws: true },
      "/events": api,
      "/api": api,
      "/v1": api,
      "/v2": api,
    },
  },
});
