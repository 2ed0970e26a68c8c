"""Accounts for referred Contacts: found by root domain, created or updated per sync mode.

Active when referrals are written as Contacts and `writeback.objects.Account` has
``dedupe: root_domain`` and a sync mode other than ``disabled``. A Contact without an account
is linked (AccountId) to the oldest Account whose Website has the referral's root domain
(its ``website``/``domain`` field, else its email's domain unless that is a personal mailbox
such as gmail.com). None found: ``create_update`` creates one (Name = the referral's company,
else the domain; Website = the domain); ``update_only`` leaves the Contact unlinked. Account
field mappings apply to found and created accounts alike. Every account write is a push of its
own (kind ``field_update``), saved before it is sent; a failed account write leaves the
Contact unlinked rather than holding the referral back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simple_salesforce import format_soql

from bridge.config import ObjectSync, OrgConfig
from bridge.writeback.client import Writer, chunks
from bridge.writeback.mapping import (
    find_account,
    plan_fields,
    root_domain,
    salesforce_email,
    sync_action,
)

DOMAIN_CHUNK = 20
"""Domains per Account query (one LIKE each, OR'ed)."""

PERSONAL_DOMAINS = frozenset(
    {
        "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "ymail.com", "hotmail.com",
        "hotmail.co.uk", "outlook.com", "live.com", "msn.com", "icloud.com", "me.com", "mac.com",
        "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "gmx.net", "web.de",
        "mail.com", "yandex.ru", "yandex.com", "mail.ru", "qq.com", "163.com", "126.com",
        "zoho.com", "fastmail.com", "hey.com", "orange.fr", "free.fr", "t-online.de",
    }
)  # fmt: skip
"""Mailbox providers: their domain says nothing about the person's company."""

WEBSITE_KEYS = ("website", "domain", "company_website")


def account_sync(org_config: OrgConfig) -> ObjectSync | None:
    sync = org_config.writeback.objects.get("Account")
    if sync is None or sync.sync_mode == "disabled" or sync.dedupe != "root_domain":
        return None
    return sync


def referral_domain(referral: Mapping[str, Any]) -> str | None:
    """The company domain of a referral: a website it names, else a non-personal email's."""
    for key in WEBSITE_KEYS:
        domain = root_domain(referral.get(key))
        if domain:
            return domain
    if salesforce_email(referral.get("email")) is None:
        return None
    domain = root_domain(str(referral["email"]))
    return None if domain is None or domain in PERSONAL_DOMAINS else domain


def find_accounts(
    writer: Writer,
    domains: Iterable[str],
    sync: ObjectSync | None,
    extra_fields: Iterable[str] = (),
) -> dict[str, Any]:
    """Domain → the oldest Account with that root domain; batched (LIKE narrows, the root
    domain decides: `foo.co.uk` never matches `barfoo.co.uk`). Reads the mapped fields and
    `extra_fields` (e.g. what the account ownership rules read) in the same query."""
    fields = ["Id", "Name", "Website", "CreatedDate"]
    for mapping in sync.fields if sync else []:
        fields += [f for f in mapping.salesforce if f not in fields]
    fields += [f for f in extra_fields if f not in fields]
    wanted = sorted(set(domains))
    candidates: list[dict[str, Any]] = []
    for part in chunks(wanted, DOMAIN_CHUNK):
        where = " OR ".join(format_soql("Website LIKE '%{:like}%'", d) for d in part)
        soql = format_soql(
            "SELECT {fields:literal} FROM Account WHERE {where:literal} "
            "ORDER BY CreatedDate ASC, Id ASC",
            fields=", ".join(fields),
            where=where,
        )
        for record in writer.query(soql):
            record.pop("attributes", None)
            candidates.append(record)
    found = {}
    for domain in wanted:
        account = find_account(domain, candidates)
        if account is not None:
            found[domain] = account
    return found


@dataclass(frozen=True)
class AccountPlan:
    domain: str
    account_id: str | None = None  # an existing account to link
    create: dict[str, Any] | None = None  # fields of an account to create
    update: dict[str, Any] = field(default_factory=dict)  # mapped fields for the existing one


def plan_account(
    domain: str,
    referral: Mapping[str, Any],
    existing: Mapping[str, Any] | None,
    sync: ObjectSync,
) -> AccountPlan:
    """What to do for one domain (pure)."""
    local = {**referral, "domain": domain}
    action = sync_action(sync.sync_mode, existing["Id"] if existing else None)
    if existing is not None:
        plan = plan_fields(local, existing, sync.fields)
        update = plan.writes if action == "update" else {}
        return AccountPlan(domain, account_id=str(existing["Id"]), update=dict(update))
    if action != "create":
        return AccountPlan(domain)
    fields = {"Name": referral.get("company") or domain, "Website": domain}
    fields.update(plan_fields(local, None, sync.fields).writes)
    return AccountPlan(domain, create=fields)
