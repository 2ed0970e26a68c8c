"""New Leads join the routing campaign (`routing.campaign`) as CampaignMembers.

Only Leads the referral add *created* join (an upsert that inserted), never records updated
because they existed. Each membership is a push of its own (`field_update` of CampaignMember,
idempotent per campaign and Lead), saved before it is sent and sent in sObject Collections of
200, so 1,000 new Leads cost 5 calls; a Lead already in the campaign (`already_member`) is a
sent push with the reason, not a failure. A campaign named by `name` is looked up once per org
and cached (`CAMPAIGN_CACHE_SECONDS`); `sfbridge org check` verifies it exists and is active.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

from simple_salesforce import format_soql

from bridge import defaults
from bridge.config import OrgConfig
from bridge.errors import Action, failure_of
from bridge.routingconfig import Campaign
from bridge.store import Store
from bridge.store.models import utcnow
from bridge.writeback.client import RecordError, Writer
from bridge.writeback.pushes import batched, claim, queue_push, write_batched

log = logging.getLogger(__name__)

_cache: dict[tuple[str, str], tuple[float, dict[str, object] | None]] = {}


def find_campaign(writer: Writer, campaign: Campaign) -> dict[str, object] | None:
    """The campaign record (Id, Name, IsActive) by id or by name; None when there is none."""
    if campaign.id:
        soql = format_soql("SELECT Id, Name, IsActive FROM Campaign WHERE Id = {}", campaign.id)
    else:
        soql = format_soql(
            "SELECT Id, Name, IsActive FROM Campaign WHERE Name = {} "
            "ORDER BY IsActive DESC, CreatedDate ASC LIMIT 1",
            campaign.name,
        )
    records = writer.query(soql)
    return records[0] if records else None


def campaign_id(writer: Writer, org_key: str, campaign: Campaign) -> str | None:
    """The active campaign's id, looked up at most once per org per cache period."""
    key = (org_key, campaign.id or f"name:{campaign.name}")
    cached = _cache.get(key)
    now = time.monotonic()
    if cached is None or cached[0] <= now:
        cached = (now + defaults.USER_MAP_CACHE_SECONDS, find_campaign(writer, campaign))
        _cache[key] = cached
    record = cached[1]
    return str(record["Id"]) if record and record.get("IsActive") else None


def already_member(sobject: str, error: RecordError) -> str | None:
    """Why a refused CampaignMember insert still counts as sent: Salesforce answers one for a
    person already in the campaign with DUPLICATE_VALUE ("Already a campaign member.") — the
    Lead is where the push wanted it (a retry after a lost answer, or someone added it
    meanwhile). A custom unique field's duplicate ("duplicate value found: ...") is a failure."""
    if (
        sobject != "CampaignMember"
        or error.code != "DUPLICATE_VALUE"
        or error.message.lower().startswith("duplicate value found")
    ):
        return None
    return f"already a member of the campaign (Salesforce: {error.code}, {error.message})"


def queue_members(
    store: Store,
    writer: Writer,
    org_config: OrgConfig,
    org_connection_id: int | None,
    lead_ids: Sequence[str],
) -> list[int]:
    """Save a pending CampaignMember push per new Lead; returns their ids (for sending)."""
    campaign = org_config.routing.campaign
    if campaign is None or not lead_ids:
        return []
    try:
        found = campaign_id(writer, str(org_connection_id), campaign)
    except Exception as exc:  # the Leads are written; their membership waits for a fix
        if failure_of(exc).action is Action.RAISE:
            raise
        log.warning("campaign lookup failed; new leads did not join it: %s", exc)
        return []
    if found is None:
        log.warning("campaign %s is missing or inactive; new leads did not join it", campaign)
        return []
    queued: list[int] = []
    with store.session() as session, batched(session):  # the memberships: one INSERT
        for lead_id in lead_ids:
            fields: dict[str, object] = {"CampaignId": found, "LeadId": lead_id}
            if campaign.status:
                fields["Status"] = campaign.status
            push, _created = queue_push(
                session,
                kind="field_update",
                idempotency_key=f"campaign:{org_connection_id}:{found}:{lead_id}",
                sobject_type="CampaignMember",
                payload={"fields": fields, "record_id": None},
                org_connection_id=org_connection_id,
            )
            queued.append(push.id)
        ids = write_batched(session, queued)  # a membership saved before: its push
        # Claimed in the transaction that makes them, so no drain takes them before this
        # sender does (the referral pushes' drain sends them next, in collections of 200);
        # the claim takes only those still pending.
        now = utcnow()
        until = now + timedelta(seconds=defaults.OUTBOUND_CLAIM_SECONDS)
        return claim(session, uuid.uuid4().hex, until=until, now=now, push_ids=ids)
