import type { TimelineKind } from "../gql/graphql";
import { kindLook } from "../kinds";

export function KindBadge({ kind }: { kind: TimelineKind }) {
  const look = kindLook(kind);
  return (
    <span className={`kind kind-${look.family}`} data-kind={kind}>
      <span className="kind-glyph" aria-hidden="true">
        {look.glyph}
      </span>
      {look.label}
    </span>
  );
}
