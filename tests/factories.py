"""Builders shared across the tests: org configs, the rows every store test starts from, and
the Bayeux messages the local org sends. One place, so a change to the config schema or the
store touches one file."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bridge.config import OrgConfig
from bridge.store.models import OrgConnection, Program

INTEGRATION_USER = "005000000000001AAA"
SALES_USER = "005000000000002AAA"

QUALIFIED_WHEN_LEAD_QUALIFIED = {
    "status": "qualified",
    "object": "Lead",
    "field": "Status",
    "op": "equals",
    "value": "Qualified",
}
APPROVED_WHEN_WON = {
    "status": "approved",
    "object": "Opportunity",
    "field": "StageName",
    "op": "changed_to",
    "value": "Closed Won",
}
# Referral fields read from related records: what the relational fetch has to follow.
RELATED_FIELDS = {"referral_fields": {"company": "Account.Name", "stage": "Opportunity.StageName"}}


def org_config(
    receiver: dict[str, Any] | None = None,
    *,
    program: str = "main",
    program_name: str | None = None,
    **org: Any,
) -> OrgConfig:
    """One org's config with one program and a receiver that qualifies on Lead.Status.

    `receiver` keys replace the receiver's defaults; other keywords are the org's own keys
    (`writeback=`, `login_url=`, …)."""
    defaults = {"program": program, "status_rules": [QUALIFIED_WHEN_LEAD_QUALIFIED]}
    return OrgConfig.model_validate(
        {
            "programs": [{"key": program, "name": program_name or program.title()}],
            "receiver": {**defaults, **(receiver or {})},
            **org,
        }
    )


def connected_org(
    session: Session,
    name: str = "acme",
    integration_user_id: str | None = INTEGRATION_USER,
    login_url: str = "https://login.example.test",
) -> OrgConnection:
    """A connected org's row (flushed, so it has its id)."""
    conn = OrgConnection(
        name=name,
        login_url=login_url,
        auth_method="jwt",
        integration_user_id=integration_user_id,
    )
    session.add(conn)
    session.flush()
    return conn


def programs(session: Session, *keys: str, **names: str) -> list[Program]:
    """Programs by key (flushed), named after their keys unless `names` says otherwise."""
    rows = [Program(key=key, name=names.get(key, key.title())) for key in keys]
    session.add_all(rows)
    session.flush()
    return rows


def pushtopic_message(
    channel: str,
    replay_id: int,
    record: dict[str, Any],
    change_type: str = "updated",
    created: str = "2026-01-05T10:00:00.000Z",
) -> dict[str, Any]:
    return {
        "channel": channel,
        "data": {
            "event": {"createdDate": created, "replayId": replay_id, "type": change_type},
            "sobject": record,
        },
    }
