"""Send pending pushes in bulk: lookups batched with IN (none for an activity whose person the
known records name), writes in sObject Collections of ≤ 200 (allOrNone false) packed five to
a composite call (`writes`), each record's result saved on its own push.

`send(store, writer, org_config, push_ids)` is idempotent: it re-reads the pushes and sends
only those still pending, counting the attempt (committed) before any call. Results are saved
after every collection request, so a crash in the middle keeps what was already written.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bridge.config import ObjectSync, OrgConfig, referral_add_for
from bridge.errors import Action, failure_of
from bridge.store import Store
from bridge.store.models import Member, Program, Push, Referral
from bridge.vocabulary import SALES_KINDS
from bridge.writeback import (
    accounts,
    campaigns,
    lead_owners,
    phases,
    referrals,
    results,
    sales,
    users,
)
from bridge.writeback.client import Writer
from bridge.writeback.known import STALE_CODES, KnownRecords, who_prefix_object
from bridge.writeback.mapping import salesforce_email
from bridge.writeback.planning import (
    PLANNERS,
    Item,
    Outcome,
    Write,
    activity_email,
    failure_outcome,
    resolves_who,
)
from bridge.writeback.pushes import (
    mark_skipped,
    payload_digest,
    queue_push,
)
from bridge.writeback.results import SendReport, save
from bridge.writeback.writes import execute

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def send(
    store: Store,
    writer: Writer,
    org_config: OrgConfig,
    push_ids: Sequence[int],
    *,
    now: datetime | None = None,
    known: KnownRecords | None = None,
) -> SendReport:
    """Send the pending pushes among `push_ids` (all of one org) and save every result;
    `known`: the org's known records (default none: every person is looked up)."""
    now = now or datetime.now(UTC)
    known = known or KnownRecords(None, None)
    report = SendReport()
    items = _claim(store, org_config, push_ids)
    if not items:
        return report
    # Sales and demos: their own steps (cascade, opportunity, line items), batched alike.
    for outcomes in sales.send_events(
        store, writer, org_config, [i for i in items if i.kind in SALES_KINDS], now
    ):
        save(store, outcomes, now, report)
    items = [i for i in items if i.kind not in SALES_KINDS]
    if not items:
        return report

    by_id = {item.push_id: item for item in items}
    todo = items
    while todo:
        # Referrals sharing an email go one per round: the second sees the record the first
        # made and follows on_existing_email, instead of both creating the same person.
        todo, later = _one_per_email(todo)
        stale = _send_round(store, writer, org_config, todo, by_id, now, report, known)
        todo = stale + later
    members = campaigns.queue_members(store, writer, org_config, items[0].org_connection_id,
                                      report.new_leads)  # fmt: skip
    if members:  # new Leads join the routing campaign: CampaignMember pushes, sent now
        joined = send(store, writer, org_config, members, now=now, known=known)
        report.sent += joined.sent
        report.failed += joined.failed
        report.retry += joined.retry
    return report


def _one_per_email(items: list[Item]) -> tuple[list[Item], list[Item]]:
    now: list[Item] = []
    later: list[Item] = []
    seen: set[str] = set()
    for item in items:
        email = (
            (item.referral or {}).get("email")
            or (item.record or {}).get("Email")
            or item.payload.get("email")
        )
        key = salesforce_email(email) if item.kind == "referral" else None
        if key and key in seen:
            later.append(item)
            continue
        if key:
            seen.add(key)
        now.append(item)
    return now, later


def _send_round(
    store: Store,
    writer: Writer,
    org_config: OrgConfig,
    items: list[Item],
    by_id: dict[int, Item],
    now: datetime,
    report: SendReport,
    known: KnownRecords,
) -> list[Item]:
    """Plan and write one round; returns the items whose known WhoId proved stale, to be
    sent again with a lookup."""
    _known_whos(known, org_config, items)
    writes: list[Write] = []
    early: list[Outcome] = []
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item)

    for kind, planner in PLANNERS:
        group = by_kind.get(kind, [])
        if not group:
            continue
        try:
            planned, refused = planner(writer, org_config, group, now)
        except Exception as exc:  # the lookup failed: every push of the group shares it
            planned, refused = [], [failure_outcome(i.push_id, exc) for i in group]
        writes += planned
        early += refused

    owned_kinds = ("referral", "field_update")
    owned_writes = [(by_id[w.push_id], w) for w in writes if by_id[w.push_id].kind in owned_kinds]
    owners = lead_owners.Owners()
    try:
        org_id = items[0].org_connection_id
        keep = (lambda m: users.save(store, org_id, m)) if org_id is not None else None
        owners = lead_owners.assign(writer, org_config, owned_writes, keep)
        unowned = owners.refused
    except Exception as exc:  # the user or account lookup failed: the pushes share it
        unowned = [failure_outcome(i.push_id, exc, fields=w.fields) for i, w in owned_writes]
    if unowned:
        held = {o.push_id for o in unowned}
        writes = [w for w in writes if w.push_id not in held]
        early += unowned
    for write in writes:
        _apply_static(write, org_config)
        _apply_overrides(write, by_id[write.push_id].payload.get("overrides"))
    save(store, early, now, report)
    sync = accounts.account_sync(org_config)
    if sync is not None:
        linking = [w for w in writes if w.link_account]
        _link_accounts(store, writer, sync, linking, by_id, now, org_config)
    by_push = {w.push_id: w for w in writes}
    stale: list[Item] = []
    for outcomes in execute(writer, writes, org_config.writeback.bulk_threshold):
        retry = [o for o in outcomes if _stale_who(by_push[o.push_id], o)]
        if retry:
            known.forget(str(by_push[o.push_id].fields.get("WhoId")) for o in retry)
            for o in retry:
                by_id[o.push_id].known_who, by_id[o.push_id].use_known = None, False
                stale.append(by_id[o.push_id])
            outcomes = [o for o in outcomes if o not in retry]
        save(store, outcomes, now, report, owners.routed)
        _learn(known, outcomes, by_push, by_id)
    return stale


def _known_whos(known: KnownRecords, org_config: OrgConfig, items: list[Item]) -> None:
    """Give each activity whose person is found by email the WhoId the index knows for it."""
    wanted = [
        i for i in items if i.kind == "activity" and i.use_known and resolves_who(i, org_config)
    ]
    whos = known.whos([activity_email(i) for i in wanted]) if wanted else {}
    for item in wanted:
        hit = whos.get(salesforce_email(activity_email(item)) or "")
        item.known_who = hit.id if hit else None


def _stale_who(write: Write, outcome: Outcome) -> bool:
    """A write to a known WhoId that Salesforce refused because the record is gone."""
    code = outcome.error.code if outcome.error else None
    return write.who_known and outcome.state == "failed" and code in STALE_CODES


def _learn(
    known: KnownRecords, outcomes: list[Outcome], by_push: dict[int, Write], by_id: dict[int, Item]
) -> None:
    """What the sent pushes taught: the Lead/Contact a referral was written to, the WhoId a
    lookup found for an activity's email."""
    written: list[tuple[str | None, str, str]] = []
    looked_up: list[tuple[str | None, str, str]] = []
    for o in outcomes:
        if o.state != "sent" or not o.sf_id:
            continue
        item, write = by_id[o.push_id], by_push[o.push_id]
        if item.kind == "referral" and o.sobject in ("Lead", "Contact"):
            written.append(((item.referral or {}).get("email"), o.sobject, o.sf_id))
        elif write.who is not None and (sobject := who_prefix_object(write.who[1])):
            looked_up.append((write.who[0], sobject, write.who[1]))
    known.learn(written)
    known.learn(looked_up, lookup=True)


def _link_accounts(
    store: Store,
    writer: Writer,
    sync: ObjectSync,
    contacts: list[Write],
    by_id: dict[int, Item],
    now: datetime,
    sync_config: OrgConfig,
) -> None:
    """Find, create or update the Accounts of referred Contacts and set their AccountId. The
    account writes are pushes of their own, sent (and saved) before the Contacts."""
    by_domain: dict[str, list[Write]] = defaultdict(list)
    for write in contacts:
        if write.fields.get("AccountId"):
            continue
        domain = accounts.referral_domain(by_id[write.push_id].referral or {})
        if domain:
            by_domain[domain].append(write)
    if not by_domain:
        return
    try:
        found = accounts.find_accounts(writer, by_domain, sync)
    except Exception as exc:  # the Contacts are still written, without an account
        if failure_of(exc).action is Action.RAISE:
            raise
        log.warning("account lookup failed; contacts stay unlinked: %s", exc)
        return

    account_writes: list[Write] = []
    creating: dict[int, str] = {}  # account push id -> domain
    with store.session() as session:
        for domain, targets in by_domain.items():
            first = by_id[targets[0].push_id]
            # one per domain and triggering push: a resend of that push reuses it
            create_key = f"account:{first.org_connection_id}:{domain}:push-{first.push_id}"
            plan = accounts.plan_account(domain, first.referral or {}, found.get(domain), sync)
            if plan.account_id:
                for write in targets:
                    write.fields["AccountId"] = plan.account_id
                _settle_account_create(session, create_key, plan.account_id, domain)
            if plan.account_id and plan.update:
                push, _ = queue_push(
                    session,
                    kind="field_update",
                    idempotency_key=f"account:{first.org_connection_id}:{plan.account_id}:"
                    f"{payload_digest(plan.update)}",
                    sobject_type="Account",
                    payload={"fields": plan.update, "record_id": plan.account_id},
                    org_connection_id=first.org_connection_id,
                )
                if push.state == "pending":
                    push.attempts += 1
                    account_writes.append(
                        Write(push.id, "Account", "update", dict(plan.update), plan.account_id)
                    )
                    _apply_static(account_writes[-1], sync_config)
            elif plan.create is not None:
                push, _ = queue_push(
                    session,
                    kind="field_update",
                    idempotency_key=create_key,
                    sobject_type="Account",
                    payload={"fields": plan.create, "record_id": None},
                    org_connection_id=first.org_connection_id,
                )
                if push.state == "sent" and push.sf_id:
                    for write in targets:
                        write.fields["AccountId"] = push.sf_id
                elif push.state == "pending":
                    push.attempts += 1
                    account_writes.append(Write(push.id, "Account", "create", dict(plan.create)))
                    _apply_static(account_writes[-1], sync_config)
                    creating[push.id] = domain
    account_report = SendReport()
    for outcomes in execute(writer, account_writes):
        save(store, outcomes, now, account_report)
        for outcome in outcomes:
            if outcome.state == "sent" and outcome.push_id in creating:
                for write in by_domain[creating[outcome.push_id]]:
                    write.fields["AccountId"] = outcome.sf_id


def _settle_account_create(session: Session, key: str, account_id: str, domain: str) -> None:
    """An account create still pending from an earlier send (its result lost to a crash, or a
    transient failure) whose domain now has an account: skip it, or the sweep would send the
    plain create again and duplicate the account."""
    push = session.scalar(select(Push).where(Push.idempotency_key == key))
    if push is not None and push.state == "pending":
        mark_skipped(
            push,
            "existing_account",
            f"Account {account_id} has the domain {domain} now; not created again",
        )


def _apply_static(write: Write, org_config: OrgConfig) -> None:
    """The object's static values (`writeback.static`) under what the write carries."""
    static = org_config.writeback.static.get(write.sobject)  # type: ignore[call-overload]
    if static:
        write.fields = {**static, **write.fields}


def _apply_overrides(write: Write, overrides: dict[str, Any] | None) -> None:
    """Field edits made at repush win over the built fields; None leaves a field out."""
    for name, value in (overrides or {}).items():
        if value is None:
            write.fields.pop(name, None)
        else:
            write.fields[name] = value


def _claim(store: Store, org_config: OrgConfig, push_ids: Sequence[int]) -> list[Item]:
    """Count the attempt on every still-pending push, committed before anything is sent;
    `PUSHES_PER_TRANSACTION` at a time (on SQLite a write transaction keeps the subscriber
    waiting for its turn)."""
    ids = sorted(set(push_ids))
    items: list[Item] = []
    for start in range(0, len(ids), results.PUSHES_PER_TRANSACTION):
        items += _claim_some(store, org_config, ids[start : start + results.PUSHES_PER_TRANSACTION])
    return items


def _claim_some(store: Store, org_config: OrgConfig, push_ids: Sequence[int]) -> list[Item]:
    """Count the attempt of each still-pending push with one UPDATE, then read the pushes
    with one query and their referrals, programs and members with one more (a query per
    push, each flushing the attempt before it, made most of a claim's cost)."""
    items: list[Item] = []
    ids = list(push_ids)
    with store.session() as session:
        session.execute(
            update(Push)
            .where(Push.id.in_(ids), Push.state == "pending")
            .values(attempts=func.coalesce(Push.attempts, 0) + 1)
            .execution_options(synchronize_session=False)
        )
        pushes = session.scalars(
            select(Push).where(Push.id.in_(ids), Push.state == "pending").order_by(Push.id)
        ).all()
        people = _people(session, [p.referral_id for p in pushes if p.kind in READS_REFERRAL])
        for push in pushes:
            item = Item(
                push.id,
                push.kind,
                push.sobject_type,
                dict(push.payload or {}),
                push.external_id_field,
                push.external_id,
                org_connection_id=push.org_connection_id,
            )
            person = people.get(push.referral_id) if push.referral_id is not None else None
            if person is not None and push.kind == "referral":
                _load_referral(item, org_config, *person)
            elif person is not None and push.kind == "activity":
                item.referral_who = person[0].sf_contact_id or person[0].sf_lead_id
            items.append(item)
    return items


READS_REFERRAL = ("referral", "activity")
"""Push kinds whose send reads the referral: a referral add is rebuilt from it, an activity
without a WhoId of its own falls back to the referral's Lead or Contact."""

Person = tuple[Referral, Program | None, Member | None]


def _people(session: Session, referral_ids: Sequence[int | None]) -> dict[int, Person]:
    """The referrals among `referral_ids` with their programs and members, in one query."""
    ids = sorted({i for i in referral_ids if i is not None})
    if not ids:
        return {}
    rows = session.execute(
        select(Referral, Program, Member)
        .outerjoin(Program, Program.id == Referral.program_id)
        .outerjoin(Member, Member.id == Referral.member_id)
        .where(Referral.id.in_(ids))
    )
    return {referral.id: (referral, program, member) for referral, program, member in rows}


def _load_referral(
    item: Item,
    org_config: OrgConfig,
    referral: Referral,
    program: Program | None,
    member: Member | None,
) -> None:
    add = referral_add_for(org_config, program.key if program else None)
    item.add = add
    item.referral = referrals.referral_values(referral)
    # Rebuilt from the referral as it is now: a fixed referral is what a repush sends.
    item.record = referrals.build_record(
        item.referral,
        referrals.member_values(member),
        source=program.name if program else None,
        add=add,
        sobject=add.create_as,
    ) | phases.outbound(org_config, add.create_as, {phases.PHASE: referral.phase})
