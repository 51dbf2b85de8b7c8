// How each timeline kind looks: its family (colour), a short label and a glyph.
import type { TimelineKind } from "./gql/graphql";

export type Family = "change" | "incident" | "resolved" | "agent" | "failed" | "approval" | "violation";

interface KindLook {
  family: Family;
  label: string;
  glyph: string;
}

export const KINDS: Record<TimelineKind, KindLook> = {
  CHANGE: { family: "change", label: "Change", glyph: "◆" },
  INCIDENT_TRIGGERED: { family: "incident", label: "Incident triggered", glyph: "▲" },
  INCIDENT_UPDATED: { family: "incident", label: "Incident updated", glyph: "▲" },
  INCIDENT_ACKNOWLEDGED: { family: "incident", label: "Incident acknowledged", glyph: "◐" },
  INCIDENT_RESOLVED: { family: "resolved", label: "Incident resolved", glyph: "✓" },
  INCIDENT_DROPPED: { family: "incident", label: "Incident event dropped", glyph: "⊘" },
  INCIDENT_ANNOTATED: { family: "incident", label: "Incident note", glyph: "✎" },
  RUN_STARTED: { family: "agent", label: "Run started", glyph: "▶" },
  RUN_COMPLETED: { family: "agent", label: "Run completed", glyph: "■" },
  RUN_FAILED: { family: "failed", label: "Run failed", glyph: "✕" },
  TOOL_CALLED: { family: "agent", label: "Tool called", glyph: "⚙" },
  TOOL_COMPLETED: { family: "agent", label: "Tool completed", glyph: "⚙" },
  TOOL_FAILED: { family: "failed", label: "Tool failed", glyph: "✕" },
  APPROVAL_REQUESTED: { family: "approval", label: "Approval requested", glyph: "?" },
  APPROVAL_DECIDED: { family: "approval", label: "Approval decided", glyph: "✓" },
  APPROVAL_EXPIRED: { family: "approval", label: "Approval expired", glyph: "⌛" },
  POLICY_VIOLATION: { family: "violation", label: "Policy violation", glyph: "!" },
};

export const KIND_GROUPS: { title: string; kinds: TimelineKind[] }[] = [
  { title: "Changes", kinds: ["CHANGE"] },
  {
    title: "Incidents",
    kinds: [
      "INCIDENT_TRIGGERED",
      "INCIDENT_UPDATED",
      "INCIDENT_ACKNOWLEDGED",
      "INCIDENT_RESOLVED",
      "INCIDENT_DROPPED",
      "INCIDENT_ANNOTATED",
    ],
  },
  {
    title: "Agents",
    kinds: ["RUN_STARTED", "RUN_COMPLETED", "RUN_FAILED", "TOOL_CALLED", "TOOL_COMPLETED", "TOOL_FAILED"],
  },
  {
    title: "Approvals",
    kinds: ["APPROVAL_REQUESTED", "APPROVAL_DECIDED", "APPROVAL_EXPIRED", "POLICY_VIOLATION"],
  },
];

export function kindLook(kind: TimelineKind): KindLook {
  return KINDS[kind] ?? { family: "change", label: kind, glyph: "•" };
}
