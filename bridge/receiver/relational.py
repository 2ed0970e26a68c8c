"""Related records of a sales entry, by Referral Rock's relational rules (SPEC §6).

For a change of one object the entry carries ``{"Lead", "Contact", "Account", "Opportunity"}``:

- same object: the record itself;
- one-to-one (Contact→Account, Opportunity→Account, converted Lead→Contact/Account/
  Opportunity): the related record, or None;
- one-to-many (Account→Contact, Account→Opportunity, Contact→Opportunity, Opportunity→Contact
  via OpportunityContactRole): the record only if exactly one exists, else None.

Bulkified over a whole batch of events: the fields an event already carries are used as they
are; only what is missing is fetched, with IN lookups of up to 200 ids, so a batch costs a
handful of queries however many events it holds, and none when the events carry everything.
`Lookup` is the I/O boundary; `bridge.salesforce.lookup.SalesforceLookup` implements it over
a Salesforce org.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.config import OrgConfig
from bridge.salesforce.topics import topic_fields
from bridge.vocabulary import STREAMED_OBJECTS

#: Where the Account's contacts go for contact matching `trigger_and_account_contacts`.
ACCOUNT_CONTACTS = "AccountContacts"

#: Fields of the changed record only: when and by whom it changed (own writes).
_TRIGGER_ONLY = ("SystemModstamp", "LastModifiedById")


def record_fields(org: OrgConfig, sobject: str) -> list[str]:
    """What an entry needs of the changed record: exactly what the bridge's PushTopic for the
    object SELECTs (`bridge.salesforce.topics`), so a topic event never lacks a field and
    costs no lookup."""
    return topic_fields(org, sobject)


def related_fields(org: OrgConfig, sobject: str) -> list[str]:
    """What an entry needs of a related record: the same, less the change's own stamps, plus
    the Account's Name (fuzzy matching compares it with a referral's company)."""
    out = [f for f in record_fields(org, sobject) if f not in _TRIGGER_ONLY]
    if sobject == "Account" and org.receiver.target_match.fuzzy and "Name" not in out:
        out.append("Name")
    return out


@dataclass
class Trigger:
    """The changed record of one event, with the field values the event carried."""

    sobject: str
    record: dict[str, Any]
    deleted: bool = False

    @property
    def record_id(self) -> str | None:
        value = self.record.get("Id")
        return str(value) if value else None


class Lookup(Protocol):
    """Batched reads from the org; each call is one query per up to 200 ids."""

    def records(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, Any]]: ...

    def children(
        self, sobject: str, parent_field: str, parent_ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, Any]]: ...

    def contact_roles(self, by: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """OpportunityContactRole rows (OpportunityId, ContactId) where `by` IN ids."""
        ...


def missing_fields(
    org: OrgConfig, trigger: Trigger, wanted: Sequence[str] | None = None
) -> list[str]:
    """The fields the trigger's record lacks (of `wanted`: its `record_fields`, unless given)."""
    if trigger.deleted:
        return []  # a deleted record cannot be read back; the event is all there is
    if wanted is None:
        wanted = record_fields(org, trigger.sobject)
    return [f for f in wanted if f not in trigger.record]


def _is_converted(record: dict[str, Any]) -> bool:
    return bool(record.get("IsConverted")) or bool(record.get("ConvertedContactId"))


def related_records(
    org: OrgConfig, triggers: Sequence[Trigger], lookup: Lookup
) -> list[dict[str, Any]]:
    """The entry's records for each trigger, fetching what the events do not carry."""
    triggers = [Trigger(t.sobject, dict(t.record), t.deleted) for t in triggers]
    needed = {s: record_fields(org, s) for s in {t.sobject for t in triggers}}  # once each
    _complete(org, triggers, lookup, needed)

    known: dict[str, dict[str, Any]] = {}  # id -> a complete record seen in this batch
    for t in triggers:
        if t.record_id and not t.deleted and not missing_fields(org, t, needed[t.sobject]):
            known[t.record_id] = t.record

    wanted: dict[str, set[str]] = defaultdict(set)  # object -> ids of 1-to-1 records
    roles_by: dict[str, set[str]] = {"ContactId": set(), "OpportunityId": set()}
    parents: set[str] = set()  # accounts whose contacts/opportunities count
    for t in triggers:
        if t.deleted or not t.record_id:
            continue
        rec = t.record
        if t.sobject == "Lead" and _is_converted(rec):
            for obj, ref in (
                ("Contact", "ConvertedContactId"),
                ("Account", "ConvertedAccountId"),
                ("Opportunity", "ConvertedOpportunityId"),
            ):
                if rec.get(ref):
                    wanted[obj].add(str(rec[ref]))
        elif t.sobject in ("Contact", "Opportunity"):
            if rec.get("AccountId"):
                wanted["Account"].add(str(rec["AccountId"]))
            roles_by["ContactId" if t.sobject == "Contact" else "OpportunityId"].add(t.record_id)
        elif t.sobject == "Account":
            parents.add(t.record_id)

    # One-to-many through contact roles: ids first, the records with the 1-to-1 fetch.
    opps_of_contact: dict[str, set[str]] = defaultdict(set)
    contacts_of_opp: dict[str, set[str]] = defaultdict(set)
    for by, role_ids in roles_by.items():
        if role_ids:
            for role in lookup.contact_roles(by, sorted(role_ids)):
                opp, contact = role.get("OpportunityId"), role.get("ContactId")
                if opp and contact:
                    opps_of_contact[str(contact)].add(str(opp))
                    contacts_of_opp[str(opp)].add(str(contact))
    for contact_id in roles_by["ContactId"]:
        if len(opps_of_contact.get(contact_id, ())) == 1:
            wanted["Opportunity"].add(next(iter(opps_of_contact[contact_id])))
    for opp_id in roles_by["OpportunityId"]:
        if len(contacts_of_opp.get(opp_id, ())) == 1:
            wanted["Contact"].add(next(iter(contacts_of_opp[opp_id])))

    by_id = dict(known)
    for obj in STREAMED_OBJECTS:
        fields = related_fields(org, obj)
        todo = sorted(i for i in wanted.get(obj, ()) if i not in by_id)
        if not todo:
            continue
        if fields == ["Id"]:
            by_id.update({i: {"Id": i} for i in todo})  # nothing to read but the id itself
            continue
        for rec in lookup.records(obj, todo, fields):
            by_id[str(rec["Id"])] = rec

    # Contact matching "trigger_and_account_contacts" also wants every contact of the account.
    with_contacts = org.receiver.contact_matching == "trigger_and_account_contacts"
    account_of: dict[int, str] = {}
    if with_contacts:
        for n, t in enumerate(triggers):
            account = _account_id(t)
            if account:
                account_of[n] = account
    children: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    contact_parents = parents | set(account_of.values())
    if contact_parents:
        for rec in lookup.children(
            "Contact", "AccountId", sorted(contact_parents), related_fields(org, "Contact")
        ):
            children[("Contact", str(rec.get("AccountId")))].append(rec)
    if parents:
        for rec in lookup.children(
            "Opportunity", "AccountId", sorted(parents), related_fields(org, "Opportunity")
        ):
            children[("Opportunity", str(rec.get("AccountId")))].append(rec)

    out: list[dict[str, Any]] = []
    for n, t in enumerate(triggers):
        records: dict[str, Any] = dict.fromkeys(STREAMED_OBJECTS)
        records[t.sobject] = t.record
        rec = t.record
        if not t.deleted and t.record_id:
            if t.sobject == "Lead" and _is_converted(rec):
                records["Contact"] = by_id.get(str(rec.get("ConvertedContactId")))
                records["Account"] = by_id.get(str(rec.get("ConvertedAccountId")))
                records["Opportunity"] = by_id.get(str(rec.get("ConvertedOpportunityId")))
            elif t.sobject == "Contact":
                records["Account"] = by_id.get(str(rec.get("AccountId")))
                opps = opps_of_contact.get(t.record_id, set())
                records["Opportunity"] = by_id.get(next(iter(opps))) if len(opps) == 1 else None
            elif t.sobject == "Opportunity":
                records["Account"] = by_id.get(str(rec.get("AccountId")))
                contacts = contacts_of_opp.get(t.record_id, set())
                records["Contact"] = by_id.get(next(iter(contacts))) if len(contacts) == 1 else None
            elif t.sobject == "Account":
                for obj in ("Contact", "Opportunity"):
                    kids = children.get((obj, t.record_id), [])
                    records[obj] = kids[0] if len(kids) == 1 else None
        if n in account_of:
            records[ACCOUNT_CONTACTS] = children.get(("Contact", account_of[n]), [])
        out.append(records)
    return out


def _account_id(t: Trigger) -> str | None:
    """The account a trigger belongs to (itself, its AccountId, or the converted account)."""
    if t.deleted or not t.record_id:
        return None
    if t.sobject == "Account":
        return t.record_id
    if t.sobject in ("Contact", "Opportunity"):
        return str(t.record["AccountId"]) if t.record.get("AccountId") else None
    if t.sobject == "Lead" and t.record.get("ConvertedAccountId"):
        return str(t.record["ConvertedAccountId"])
    return None


def _complete(
    org: OrgConfig,
    triggers: Sequence[Trigger],
    lookup: Lookup,
    wanted: Mapping[str, Sequence[str]],
) -> None:
    """Fetch, per object, the fields some events lack (the event's own values win); `wanted`
    is each object's `record_fields`."""
    need: dict[str, set[str]] = defaultdict(set)
    for t in triggers:
        if t.record_id and missing_fields(org, t, wanted[t.sobject]):
            need[t.sobject].add(t.record_id)
    for obj, ids in need.items():
        fetched = {str(r["Id"]): r for r in lookup.records(obj, sorted(ids), wanted[obj])}
        for t in triggers:
            if t.sobject == obj and t.record_id in fetched:
                t.record = {**fetched[t.record_id], **t.record}
