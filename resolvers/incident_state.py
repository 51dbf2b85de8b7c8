"""Live incident state that policies may depend on ("a change freeze while something burns")."""

from __future__ import annotations

from collections.abc import Collection

from models.incident import Incident, IncidentStatus

OPEN_STATUSES = [IncidentStatus.TRIGGERED, IncidentStatus.ACKNOWLEDGED]


async def services_with_open_incidents(
    *, workspace_id: str, names: Collection[str]
) -> frozenset[str]:
    """Which of the named services have a triggered or acknowledged incident right now."""
    if not names:
        return frozenset()
    found = await Incident.filter(
        workspace_id=workspace_id, status__in=OPEN_STATUSES, service__name__in=list(names)
    ).values_list("service__name", flat=True)
    return frozenset(str(name) for name in found)
