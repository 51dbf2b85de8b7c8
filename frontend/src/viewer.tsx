// Who is signed in: the key's name, workspace and scopes (which decide what buttons do).
import { createContext, useContext, type ReactNode } from "react";
import { useQuery } from "urql";
import { graphql } from "./gql";
import type { Scope, ViewerQuery } from "./gql/graphql";
import { ErrorNote, Loading } from "./components/States";

const ViewerDocument = graphql(`
  query Viewer {
    viewer {
      keyId
      name
      scopes
      workspace {
        id
        name
      }
      limits {
        pageSizeMax
      }
    }
  }
`);

type ViewerValue = ViewerQuery["viewer"] & {
  can: (scope: Scope) => boolean;
  /** `wanted`, or less if this server takes no list that long (`OPSGRAPH_PAGE_SIZE_MAX`). */
  page: (wanted: number) => number;
};

const ViewerContext = createContext<ViewerValue | null>(null);

export function ViewerProvider({ children }: { children: ReactNode }) {
  const [{ data, error, fetching }, refetch] = useQuery({
    query: ViewerDocument,
    requestPolicy: "cache-first",
  });
  if (!data) {
    if (error) return <ErrorNote error={error} retry={() => refetch({ requestPolicy: "network-only" })} />;
    if (fetching) return <Loading what="Signing in" />;
    return null;
  }
  const viewer = data.viewer;
  const can = (scope: Scope): boolean => viewer.scopes.includes("ADMIN") || viewer.scopes.includes(scope);
  const page = (wanted: number): number => Math.min(wanted, viewer.limits.pageSizeMax);
  return <ViewerContext.Provider value={{ ...viewer, can, page }}>{children}</ViewerContext.Provider>;
}

export function useViewer(): ViewerValue {
  const value = useContext(ViewerContext);
  if (!value) throw new Error("useViewer outside ViewerProvider");
  return value;
}
