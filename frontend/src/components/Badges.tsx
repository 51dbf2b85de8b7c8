// Severity and status badges, coloured the same everywhere, and the chips of where a thing ran.
import { humanize } from "../format";

export function Severity({ severity }: { severity: string }) {
  return (
    <span className={`sev sev-${severity.toLowerCase()}`} data-severity={severity}>
      {humanize(severity)}
    </span>
  );
}

const STATUS_LABELS: Record<string, string> = {
  TRIGGERED: "Open",
  ACKNOWLEDGED: "Acknowledged",
  RESOLVED: "Resolved",
  AWAITING_APPROVAL: "Awaiting approval",
};

export function Status({ status }: { status: string }) {
  return (
    <span className={`status status-${status.toLowerCase().replace(/_/g, "-")}`} data-status={status}>
      {STATUS_LABELS[status] ?? humanize(status)}
    </span>
  );
}

/** A text chip: long values are cut with an ellipsis, the whole value in its title. */
export function Chip({ kind, value }: { kind?: "service" | "env" | "label"; value: string }) {
  return (
    <span className={kind ? `chip chip-${kind}` : "chip"} title={value}>
      {value}
    </span>
  );
}

/** The service and environment chips, each only when it is known. */
export function Where({ service, environment }: { service?: string | null; environment?: string | null }) {
  return (
    <>
      {service ? <Chip kind="service" value={service} /> : null}
      {environment ? <Chip kind="env" value={environment} /> : null}
    </>
  );
}
