// Severity and status badges, coloured the same everywhere.
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
