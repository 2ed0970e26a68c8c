"""The integration's on/off switch, per org and direction (`sfbridge org pause/resume`, the API).

Stored on the org's connection (`outbound_paused`, `inbound_paused`), so every process sees it:

- **outbound off**: pushes are still saved (the API answers 201 as usual) but the org's drain
  sends nothing; they stay `pending`. Turned on, a drain is requested at once and sends them.
- **inbound off**: events are still received and stored (nothing is lost, the stream keeps its
  replay position) but no inbound job takes them in; turned on, they are enqueued.

Each change is audited (`org.pause` / `org.resume`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import redis
from sqlalchemy import select, update

from bridge import audit, jobs
from bridge.errors import UsageError
from bridge.store import Store
from bridge.store.models import InboundEvent, OrgConnection
from bridge.writeback.jobs import request_drain

log = logging.getLogger(__name__)

Direction = Literal["outbound", "inbound"]
DIRECTIONS: tuple[Direction, ...] = ("outbound", "inbound")


def state(conn: OrgConnection) -> dict[str, object]:
    return {
        "org": conn.name,
        "outbound": "paused" if conn.outbound_paused else "on",
        "inbound": "paused" if conn.inbound_paused else "on",
    }


def set_paused(
    store: Store,
    client: redis.Redis | None,
    name: str,
    directions: Sequence[Direction],
    paused: bool,
    *,
    actor: str,
) -> dict[str, object]:
    """Turn the named directions of org connection `name` off (paused) or on; returns the
    state. Turning a direction on releases what waited: a drain, the stored events."""
    wanted = list(directions) or list(DIRECTIONS)
    with store.session() as session:
        conn = session.scalar(select(OrgConnection).where(OrgConnection.name == name))
        if conn is None:
            raise UsageError(
                f"org '{name}' has no stored connection: run `sfbridge org connect {name}`",
                code="unknown_org",
                fields=["org"],
            )
        values = {f"{d}_paused": paused for d in wanted}
        # updated_at names the connection's version (a re-connect): a switch is not one.
        session.execute(
            update(OrgConnection)
            .where(OrgConnection.id == conn.id)
            .values(**values, updated_at=conn.updated_at)
        )
        audit.record(
            session, actor, "org.pause" if paused else "org.resume", "org", conn.id,
            directions=wanted,
        )  # fmt: skip
        session.flush()
        session.refresh(conn)
        out, org_id = state(conn), conn.id
    if not paused and client is not None:
        if "outbound" in wanted:
            request_drain(client, org_id)
        if "inbound" in wanted:
            with store.session() as session:
                ids = list(
                    session.scalars(
                        select(InboundEvent.id).where(
                            InboundEvent.org_connection_id == org_id, InboundEvent.state == "new"
                        )
                    )
                )
            jobs.enqueue_events(client, ids)
    return out
