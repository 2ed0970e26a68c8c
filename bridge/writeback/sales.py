"""Sales and demos to Salesforce: the Account and Contacts connected or created by Sellfire's
cascade (`cascade`), the Opportunity of the sales cycle, its contact roles and line items.

A batch of sale/demo pushes goes through the same steps together, each step one query per
object and one sObject Collections request per 200 writes, the step's queries and its
collections each packed five to a composite call (one API call; `writes.send`, as the drain
sends). A step waits for the ids of the one before it:

1. products (sales): Product2 by ProductCode or Name, the standard price book's entries
   (created when missing if `writeback.sales.create_price_entries`); a missing product fails
   the push before anything is written;
2. accounts: the referral's Account, else the cascade over the Accounts sharing a phone or
   name; sales of one batch that create the same business share one create;
3. contacts: the referral's Contact, else the cascade over the Account's Contacts, for the
   person and every associated contact;
4. opportunity (sales, and demos with `opportunity_at_demo`): the referral's Opportunity (the
   current cycle's), else the Account's one open Opportunity, else a new one; a sale moves it
   to `won_stage`, a demo sets its CloseDate;
5. contact roles for the people not on it yet, and line items (sales): one
   OpportunityLineItem per item — both need only the Opportunity, so they share a call;
6. sites (sales with locations, `writeback.sales.sites`): the Account's organization and one
   site per location, upserted by their keys (`sales_sites`).

What each step decided, and the candidates it saw, is saved on the push (`payload.result`)
after every step, so the report explains it and a resend continues where a crash stopped.
The referral keeps the ids (`sf_account_id`, `sf_contact_id`, `sf_opportunity_id`). Events
of one referral in the same batch go in rounds, oldest first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from bridge.config import OrgConfig
from bridge.matchkeys import company_key
from bridge.store import Store
from bridge.store.models import Push, Referral
from bridge.writeback import (
    cascade,
    engagement,
    events,
    lead_convert,
    sales_items,
    sales_lookups,
    sales_sites,
    users,
)
from bridge.writeback.client import RecordError, Writer, record_error
from bridge.writeback.planning import Item, Outcome, failure_outcome
from bridge.writeback.referrals import referral_values
from bridge.writeback.sales_records import (
    Event,
    Records,
    SharedWrite,
    mapped,
    permanent,
    write,
    write_all,
)


def send_events(
    store: Store, writer: Writer, org_config: OrgConfig, items: list[Item], now: datetime
) -> Iterator[list[Outcome]]:
    """Send the sale and demo pushes among `items`; yields outcomes for the sender to save."""
    todo = _load(store, items)
    while todo:
        round_: list[Event] = []
        later: list[Event] = []
        seen: set[int] = set()
        for event in todo:
            (later if event.referral_id in seen else round_).append(event)
            seen.add(event.referral_id)
        yield _run(store, writer, org_config, round_)
        todo = later


def _run(store: Store, writer: Writer, cfg: OrgConfig, batch: list[Event]) -> list[Outcome]:
    steps = (
        _owners,
        sales_items.resolve_products,
        _accounts,
        _contacts,
        _opportunities,
        _roles_and_items,
        sales_sites.write_sites,
    )
    for step in steps:
        live = [e for e in batch if e.live()]
        if not live:
            break
        try:
            step(writer, cfg, live)
        except Exception as exc:  # a lookup failed: every push of the batch shares it
            outcome = failure_outcome(0, exc)
            for event in live:
                event.fail(
                    Outcome(
                        event.item.push_id,
                        "failed",
                        error=outcome.error,
                        error_class=outcome.error_class,
                    )
                )
        _save_progress(store, batch)
    return [_outcome(e) for e in batch]


# ---- loading and saving ------------------------------------------------------------------------


def _load(store: Store, items: list[Item]) -> list[Event]:
    out = []
    with store.session() as session:
        for item in sorted(items, key=lambda i: i.push_id):
            push = session.get(Push, item.push_id)
            model = events.MODELS["sale" if item.kind == "sale" else "demo"]
            row: Any = session.get(model, item.payload.get("event_id"))
            referral = (
                session.get(Referral, push.referral_id) if push and push.referral_id else None
            )
            if row is None or referral is None:
                event = Event(item, item.kind, {}, 0, {}, {})
                event.fail(
                    permanent(
                        item.push_id,
                        "event_missing",
                        "the sale or demo of this push no longer exists",
                    )
                )
            else:
                person = referral_values(referral)
                for name in ("sf_lead_id", "sf_contact_id", "sf_account_id", "sf_opportunity_id"):
                    person[name] = getattr(referral, name)
                result = dict(item.payload.get("result") or {})
                event = Event(item, item.kind, dict(row.body), referral.id, person, result)
                if item.kind == "demo" and row.body.get("state") == "cancelled":
                    event.skipped = "demo_cancelled"
            out.append(event)
        ended = engagement.earlier_cycles(session, [e.referral_id for e in out if e.referral_id])
        for event in out:
            event.person["ended_opportunities"] = sorted(ended.get(event.referral_id, ()))
    return out


def _save_progress(store: Store, batch: list[Event]) -> None:
    with store.session() as session:
        for event in batch:
            push = session.get(Push, event.item.push_id)
            if push is None or push.state != "pending" or not event.result:
                continue
            push.payload = {**(push.payload or {}), "result": event.result}
            referral = session.get(Referral, event.referral_id)
            if referral is None or event.failed is not None:
                continue
            people = event.result.get("people") or [{}]
            referral.sf_account_id = event.account_id or referral.sf_account_id
            referral.sf_contact_id = people[0].get("record_id") or referral.sf_contact_id
            opportunity = (event.result.get("opportunity") or {}).get("record_id")
            referral.sf_opportunity_id = opportunity or referral.sf_opportunity_id
            event.person.update(
                sf_account_id=referral.sf_account_id,
                sf_contact_id=referral.sf_contact_id,
                sf_opportunity_id=referral.sf_opportunity_id,
            )


def _outcome(event: Event) -> Outcome:
    push_id = event.item.push_id
    if event.failed is not None:
        return event.failed
    if event.skipped:
        return Outcome(
            push_id,
            "skipped",
            error=RecordError(event.skipped, "the demo was cancelled: nothing is written", []),
        )
    opportunity = (event.result.get("opportunity") or {}).get("record_id")
    if opportunity:
        return Outcome(push_id, "sent", sf_id=opportunity, sobject="Opportunity")
    return Outcome(push_id, "sent", sf_id=event.account_id, sobject="Account")


# ---- owners (the user mapping) -------------------------------------------------------------------


def _owners(writer: Writer, cfg: OrgConfig, batch: list[Event]) -> None:
    """OwnerId of the records an event creates (and of its Opportunity): its rep's active user.
    An unmapped or inactive rep leaves the owner to Salesforce, with the reason on the push."""
    todo = [e for e in batch if e.body.get("owner") and "owner" not in e.result]
    if not todo:
        return
    org_key = str(todo[0].item.org_connection_id)
    mapping = users.user_map(writer, org_key, cfg.users)  # resolved once per org, cached
    for event in todo:
        rep = event.body["owner"]
        user_id = mapping.user(rep)
        if user_id:
            reason = f"{rep}: active Salesforce user {user_id}"
        elif rep in mapping.users:
            reason = f"{rep}: {mapping.problems.get(rep, 'maps to no active Salesforce user')}"
        else:
            reason = f"{rep} is not in the user mapping (users:)"
        event.result["owner"] = {"rep": rep, "user_id": user_id, "reason": reason}


def _owner_field(event: Event) -> dict[str, Any]:
    user = (event.result.get("owner") or {}).get("user_id")
    return {"OwnerId": user} if user else {}


# ---- 2. accounts ---------------------------------------------------------------------------------


def _accounts(writer: Writer, cfg: OrgConfig, batch: list[Event]) -> None:
    region = cfg.writeback.sales.phone_region
    todo = [e for e in batch if not e.account_id]
    for event in list(todo):
        if event.person.get("sf_account_id"):
            event.result["account"] = {
                "action": "connect",
                "record_id": event.person["sf_account_id"],
                "reason": "the referral's account",
                "steps": [],
            }
            todo.remove(event)
        elif not event.business:
            event.fail(
                permanent(
                    event.item.push_id,
                    "business_name_missing",
                    "no business name (and the referral has no company)",
                    ["business_name"],
                )
            )
            todo.remove(event)
    if not todo:
        return
    candidates = sales_lookups.accounts(writer, [(e.business, e.phone) for e in todo], region)
    creates: dict[tuple[str | None, str | None], SharedWrite] = {}
    for event in todo:
        out = cascade.account(
            business_name=event.business,
            phone=event.phone,
            city=event.body.get("city"),
            candidates=candidates,
            region=region,
        )
        seen = {i for s in out.steps for i in s.matched}
        event.result["account"] = {
            **out.as_dict(),
            "candidates": [
                c
                for c in candidates
                if c["Id"] in seen or company_key(c.get("Name")) == company_key(event.business)
            ],
        }
        if out.action == "create":
            key = (company_key(event.business), cascade.phone_number(event.phone, region))
            fields = {
                "Name": event.business,
                "Phone": event.phone,
                "BillingCity": event.body.get("city"),
                "BillingState": event.body.get("state") or event.body.get("state_code"),
            }
            fields = {k: v for k, v in fields.items() if v} | mapped(cfg, "Account", event)
            fields |= _owner_field(event)
            creates.setdefault(key, SharedWrite([], fields)).events.append(event)
    write(writer, "Account", list(creates.values()), cfg.writeback.static.get("Account"))
    for w in creates.values():
        for event in w.events:
            if w.ok:
                event.result["account"]["record_id"] = w.saved_id
                if len(w.events) > 1:
                    event.result["account"]["reason"] += " (one create for this batch's sales)"


# ---- 3. contacts ---------------------------------------------------------------------------------


def _contacts(writer: Writer, cfg: OrgConfig, batch: list[Event]) -> None:
    region = cfg.writeback.sales.phone_region
    todo = [
        e
        for e in batch
        if "people" not in e.result or any(not p.get("record_id") for p in e.result["people"])
    ]
    _convert_leads(writer, cfg, todo)
    todo = [e for e in todo if e.live()]
    connected = sorted(
        {str(e.account_id) for e in todo if e.result["account"].get("action") == "connect"}
    )
    by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in sales_lookups.contacts(writer, connected) if connected else []:
        by_account[str(c.get("AccountId"))].append(c)
    writes: list[tuple[Event, int, SharedWrite]] = []
    for event in todo:
        people = event.result.setdefault("people", [{} for _ in event.people])
        for n, person in enumerate(event.people):
            if people[n].get("record_id"):
                continue
            if n == 0 and event.person.get("sf_contact_id"):
                people[n] = {
                    "action": "connect",
                    "record_id": event.person["sf_contact_id"],
                    "reason": "the referral's contact",
                    "steps": [],
                }
                continue
            out = cascade.contact(
                last_name=person.get("last_name"),
                phone=person.get("phone"),
                candidates=by_account.get(str(event.account_id), []),
                region=region,
            )
            people[n] = out.as_dict()
            if out.action == "create":
                fields = {
                    "AccountId": event.account_id,
                    "FirstName": person.get("first_name"),
                    "LastName": person.get("last_name"),
                    "Phone": person.get("phone"),
                    "Email": person.get("email"),
                }
                fields = {k: v for k, v in fields.items() if v} | _owner_field(event)
                if n == 0:
                    fields |= mapped(cfg, "Contact", event)
                writes.append((event, n, SharedWrite([event], fields)))
    write(writer, "Contact", [w for _e, _n, w in writes], cfg.writeback.static.get("Contact"))
    for event, n, w in writes:
        if w.ok:
            event.result["people"][n]["record_id"] = w.saved_id


def _convert_leads(writer: Writer, cfg: OrgConfig, todo: list[Event]) -> None:
    """At a demo set, a person known only as a Lead becomes a Contact of the cascade's Account
    the way Salesforce converts Leads (SOAP convertLead, no Opportunity: step 4 makes it)."""
    if not cfg.writeback.sales.convert_leads:
        return
    leads = [
        e
        for e in todo
        if e.kind == "demo"
        and e.person.get("sf_lead_id")
        and not e.person.get("sf_contact_id")
        and not (e.result.get("people") or [{}])[0].get("record_id")
    ]
    if not leads:
        return
    converts = [
        {
            "accountId": e.account_id,
            "convertedStatus": cfg.writeback.sales.converted_status,
            "doNotCreateOpportunity": True,
            "leadId": e.person["sf_lead_id"],
        }
        for e in leads
    ]
    try:
        results = lead_convert.convert(writer, converts)
    except Exception as exc:
        for event in leads:
            event.fail(failure_outcome(event.item.push_id, exc))
        return
    for event, result in zip(leads, results, strict=True):
        if not result["success"]:
            err = record_error(result)
            event.fail(
                Outcome(
                    event.item.push_id,
                    "failed",
                    sobject="Lead",
                    error=err,
                    error_class=err.error_class,
                )
            )
            continue
        people = event.result.setdefault("people", [{} for _ in event.people])
        people[0] = {
            "action": "convert",
            "record_id": result["contactId"],
            "lead_id": result["leadId"],
            "reason": f"the referral's Lead {result['leadId']} converted (convertLead) into "
            "this Contact of the account",
            "steps": [],
        }


# ---- 4. opportunity and contact roles ----------------------------------------------------------


def _wants_opportunity(event: Event, cfg: OrgConfig) -> bool:
    return event.kind == "sale" or cfg.writeback.sales.opportunity_at_demo


def _opportunities(writer: Writer, cfg: OrgConfig, batch: list[Event]) -> None:
    sales = cfg.writeback.sales
    todo = [
        e
        for e in batch
        if _wants_opportunity(e, cfg) and not (e.result.get("opportunity") or {}).get("written")
    ]
    lookup = sorted(
        {
            str(e.account_id)
            for e in todo
            if not e.person.get("sf_opportunity_id")
            and e.result["account"].get("action") == "connect"
        }
    )
    open_by_account: dict[str, list[str]] = defaultdict(list)
    for o in sales_lookups.open_opportunities(writer, lookup) if lookup else []:
        open_by_account[str(o["AccountId"])].append(str(o["Id"]))
    writes: list[tuple[Event, SharedWrite]] = []
    for event in todo:
        current = event.person.get("sf_opportunity_id")
        ended = event.person.get("ended_opportunities") or []  # earlier sales cycles'
        found = [o for o in open_by_account.get(str(event.account_id), []) if o not in ended]
        if current:
            record_id, why = current, "the referral's opportunity (this sales cycle's)"
        elif len(found) == 1:
            record_id, why = found[0], "the account's one open opportunity"
        else:
            record_id = None
            why = (
                f"{len(found)} open opportunities on the account, none of this cycle"
                if found
                else "no open opportunity of this cycle"
            )
            if ended:
                why += " (a new sales cycle: the phase rested or retired the last one)"
        date = event.at[:10]
        if event.kind == "sale":
            fields: dict[str, Any] = {"StageName": sales.won_stage, "CloseDate": date}
            amount = event.body.get("amount")
            if amount is None and event.body.get("items"):
                amount = sum(
                    float(i["quantity"]) * float(i["unit_price"]) for i in event.body["items"]
                )
            if amount is not None:
                fields["Amount"] = float(amount)
        else:
            fields = {"CloseDate": date}
        if record_id is None:
            fields |= {"Name": event.business, "AccountId": event.account_id}
            fields.setdefault("StageName", sales.demo_stage)
        fields |= mapped(cfg, "Opportunity", event) | _owner_field(event)
        fields |= {k: v for k, v in (event.item.payload.get("overrides") or {}).items()}
        fields = {k: v for k, v in fields.items() if v is not None}
        action = "update" if record_id else "create"
        event.result["opportunity"] = {"action": action, "record_id": record_id, "reason": why}
        writes.append((event, SharedWrite([event], fields, record_id=record_id)))
    write(writer, "Opportunity", [w for _e, w in writes], cfg.writeback.static.get("Opportunity"))
    for event, w in writes:
        if w.ok:
            event.result["opportunity"] |= {"record_id": w.saved_id, "written": True}


def _roles_and_items(writer: Writer, cfg: OrgConfig, batch: list[Event]) -> None:
    """Contact roles and line items hang off the written Opportunity alone: one step, their
    writes packed together (one composite call for a batch's roles and items)."""
    todo = [
        e
        for e in batch
        if (e.result.get("opportunity") or {}).get("written")
        and not e.result["opportunity"].get("roles")
    ]
    updated = sorted(
        {
            e.result["opportunity"]["record_id"]
            for e in todo
            if e.result["opportunity"]["action"] == "update"
        }
    )
    have = {
        (r["OpportunityId"], r["ContactId"])
        for r in (sales_lookups.contact_roles(writer, updated) if updated else [])
    }
    roles: list[tuple[Event, SharedWrite]] = []
    for event in todo:
        opportunity = event.result["opportunity"]["record_id"]
        for n, person in enumerate(event.result.get("people") or []):
            contact = person.get("record_id")
            if contact and (opportunity, contact) not in have:
                have.add((opportunity, contact))
                fields = {"OpportunityId": opportunity, "ContactId": contact, "IsPrimary": n == 0}
                roles.append((event, SharedWrite([event], fields)))
    items = sales_items.plan_line_items(batch)
    write_all(
        writer,
        [
            Records("OpportunityContactRole", [w for _e, w in roles]),
            Records("OpportunityLineItem", [w for _e, _n, w in items]),
        ],
    )
    sales_items.keep_line_items(items)
    for event in todo:  # its roles are on (a failed line item must not make them again)
        if all(w.ok for e, w in roles if e is event):
            event.result["opportunity"]["roles"] = True
