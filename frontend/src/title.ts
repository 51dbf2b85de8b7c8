// The document's title while a page is shown, "What · Opsgraph": tabs, history and screen
// readers tell the pages apart.
import { useEffect } from "react";

export function useTitle(what: string): void {
  useEffect(() => {
    document.title = `${what} · Opsgraph`;
  }, [what]);
}
