// Types for every GraphQL document in src/, generated from the checked-in ../schema.graphql.
// OPSGRAPH_UI_SCHEMA points it at another SDL file (e.g. one printed from work in progress).
import { existsSync } from "node:fs";
import type { CodegenConfig } from "@graphql-codegen/cli";

// Parts of DESIGN.md's surface the UI is written against before they land (deleted after).
const pending = existsSync("schema.pending.graphql") ? ["schema.pending.graphql"] : [];

const config: CodegenConfig = {
  schema: [process.env.OPSGRAPH_UI_SCHEMA ?? "../schema.graphql", ...pending],
  documents: ["src/**/*.{ts,tsx}", "!src/gql/**/*"],
  ignoreNoDocuments: true,
  generates: {
    "./src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        scalars: { DateTime: "string", JSON: "unknown", ID: "string" },
        enumsAsTypes: true,
        useTypeImports: true,
        skipTypename: false,
        strictScalars: true,
      },
    },
  },
  silent: true,
};

export default config;
