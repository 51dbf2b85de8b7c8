"""One log line for each change an administrator makes to a workspace's keys, services and
policies, naming the key that made it (its name and id), on the `opsgraph.audit` logger:
who issued an admin key, revoked one or deleted a freeze policy was recorded nowhere."""

from __future__ import annotations

import logging

from resolvers.auth import Principal

log = logging.getLogger("opsgraph.audit")


def audit(principal: Principal, did: str) -> None:
    """Log what `principal` did (`did`: "revoked key key_…")."""
    log.info(
        "%r (key %s) %s, in workspace %s",
        principal.name,
        principal.key_id,
        did,
        principal.workspace_id,
    )
