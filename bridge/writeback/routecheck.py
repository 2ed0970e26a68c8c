"""`sfbridge org check` for lead routing: every mapped rep resolves to an active Salesforce
user (`users:`), every routing fallback is such a user, and the routing campaign exists, is
active and has the configured member status. Read in batches, like the send itself."""

from __future__ import annotations

from simple_salesforce import format_soql

from bridge.config import OrgConfig
from bridge.salesforce.check import Finding, issue, ok
from bridge.writeback.campaigns import find_campaign
from bridge.writeback.client import Writer
from bridge.writeback.users import UserMap, resolve


def check_users(mapping: UserMap, org_config: OrgConfig) -> list[Finding]:
    findings = []
    for rep, user_id in sorted(mapping.users.items()):
        if user_id:
            findings.append(ok("user", rep, f"active Salesforce user {user_id}"))
        else:
            findings.append(issue("user", rep, mapping.problems.get(rep, "not mapped")))
    for value in org_config.routing.fallbacks():
        if value in mapping.users and mapping.users[value] is None:
            findings.append(
                issue("routing", f"fallback {value}", "maps to no active Salesforce user")
            )
    return findings


def check_campaign(writer: Writer, org_config: OrgConfig) -> list[Finding]:
    campaign = org_config.routing.campaign
    if campaign is None:
        return []
    subject = campaign.id or str(campaign.name)
    record = find_campaign(writer, campaign)
    if record is None:
        return [
            issue("campaign", subject, "no such Campaign (or the integration user cannot see it)")
        ]
    if not record.get("IsActive"):
        return [issue("campaign", subject, f"Campaign {record['Id']} is not active")]
    if campaign.status:
        statuses = [
            str(r.get("Label"))
            for r in writer.query(
                format_soql(
                    "SELECT Label FROM CampaignMemberStatus WHERE CampaignId = {}", record["Id"]
                )
            )
        ]
        if campaign.status not in statuses:
            return [
                issue(
                    "campaign",
                    subject,
                    f"member status '{campaign.status}' is not one of the campaign's: "
                    f"{', '.join(statuses) or 'none'}",
                )
            ]
    return [ok("campaign", subject, f"Campaign {record['Id']}, active")]


def check_routing(writer: Writer, org_config: OrgConfig) -> tuple[list[Finding], UserMap]:
    """The routing findings, and the user mapping as resolved now (for the admin page)."""
    mapping = resolve(writer, org_config.users) if org_config.users else UserMap()
    return check_users(mapping, org_config) + check_campaign(writer, org_config), mapping
