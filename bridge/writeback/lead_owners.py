"""The OwnerId of the Leads and Contacts a batch of pushes writes.

The referral's owner rep (`Referral.owner`: given to the API, named by a sale or demo, or
routing's earlier choice) is what OwnerId flows from, on create and on update, when it maps to
an active Salesforce user (`users:`). Only a new record whose owner is not (usably) set is
routed (`routing.record_owner`), and routing's choice then becomes the referral's owner
(`record`: field history and audit, with why). The routing order, for the records the batch
creates (not records updated because they existed):

1. **Account ownership rules** (`routing.account_rules`): the person's Account — the oldest
   with the referral's root domain, read with the fields the rules need in one batched query —
   in the first segment it matches gives the owner (its owner field, then by a second field,
   else the rule's fallback user);
2. else the **Lead owner priority** (`routing.lead_owner`): meeting, routed, closed — the
   first switched-on rep who maps to an active Salesforce user (`bridge.writeback.users`),
   else its fallback user;
3. else the fallback for companies matching no segment (`routing.no_segment_fallback`).

Nobody found: the push fails with `owner_unresolved` (the record is never silently owned by
the integration user). Without `lead_owner` and `account_rules` routing sets no owner. The
decisions are the pure core's (`bridge.writeback.routing`); this module gathers their inputs
in batches (the user mapping is cached per org) and writes `OwnerId`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.orm import Session

from bridge import audit
from bridge.config import OrgConfig
from bridge.errors import UsageError
from bridge.routingconfig import Routing
from bridge.store.models import Referral
from bridge.writeback import accounts, history, ownership, routing
from bridge.writeback.client import Writer
from bridge.writeback.planning import Item, Outcome, Write, failure_outcome
from bridge.writeback.users import UserMap, user_map


def rules_of(config: Routing, users: UserMap) -> routing.AccountRules:
    """The config's account rules for the pure core, fallbacks resolved to user ids."""
    return routing.AccountRules(
        rules=tuple(
            routing.AccountRule(
                name=r.name,
                segment=tuple(routing.Condition(c.field, c.op, c.value) for c in r.segment),
                owner_field=r.owner_field,
                then_by=r.then_by,
                fallback=users.owner(r.fallback),
            )
            for r in config.account_rules
        ),
        no_segment_fallback=users.owner(config.no_segment_fallback),
        mapped_users=users.active_ids,
    )


def in_a_segment(account: Mapping[str, Any], rules: routing.AccountRules) -> bool:
    return any(all(c.holds(account) for c in rule.segment) for rule in rules.rules)


def choose(
    referral: Mapping[str, Any],
    account: Mapping[str, Any] | None,
    config: Routing,
    users: UserMap,
) -> routing.OwnerChoice:
    """The owner of one new record, by the order in the module docstring."""
    rules = rules_of(config, users)
    if account is not None and in_a_segment(account, rules):
        return routing.account_owner(account, rules)
    passed: tuple[str, ...] = ()
    if config.lead_owner is not None:
        enabled = [
            s for s in routing.OWNER_ORDER if getattr(config.lead_owner, s)
        ]  # meeting, routed, closed
        touches = routing.Touches(
            referral.get("meeting_owner"), referral.get("routed_owner"), referral.get("closed_by")
        )
        choice = routing.lead_owner(
            touches, users.users, enabled=enabled, fallback=users.owner(config.lead_owner.fallback)
        )
        if choice.user_id or not config.account_rules:
            return choice
        passed = choice.passed_over
    choice = routing.account_owner({}, routing.AccountRules(
        no_segment_fallback=rules.no_segment_fallback))  # fmt: skip
    return routing.OwnerChoice(choice.user_id, choice.source, choice.reason, passed)


@dataclass
class Owners:
    """What `assign` decided: the pushes that cannot be owned (failures, not to be written),
    and routing's choices for new records (push id -> the rep chosen, None when the user is
    no rep's, and why), which become the referrals' owners once sent (`record`)."""

    refused: list[Outcome] = field(default_factory=list)
    routed: dict[int, tuple[str | None, str]] = field(default_factory=dict)


def _rep_of(users: UserMap, user_id: str) -> str | None:
    return next((rep for rep, u in sorted(users.users.items()) if u == user_id), None)


def assign(
    writer: Writer,
    org_config: OrgConfig,
    pairs: list[tuple[Item, Write]],
    keep: Callable[[UserMap], None] | None = None,
) -> Owners:
    """Set OwnerId on the Lead/Contact writes by `routing.record_owner`: the referral's owner
    rep (a field update carries it as `owner`), else routing's choice for a new record."""
    config = org_config.routing
    owned = [
        (i, w, _owner_rep(i))
        for i, w in pairs
        if w.sobject in ("Lead", "Contact") and w.op in ("upsert", "update")
    ]
    routes = config.sets_owner
    wanted = [(i, w, rep) for i, w, rep in owned if rep or (routes and w.op == "upsert")]
    out = Owners()
    if not wanted or not org_config.users and not routes:
        return out
    org_key = str(wanted[0][0].org_connection_id)
    users = user_map(writer, org_key, org_config.users, keep=keep)
    found: dict[str, Any] = {}
    domains = {
        i.push_id: accounts.referral_domain(i.referral or {})
        for i, w, rep in wanted
        if w.op == "upsert" and i.kind == "referral"
    }
    if routes and config.account_rules and any(domains.values()):
        found = accounts.find_accounts(
            writer, {d for d in domains.values() if d}, None, config.account_fields()
        )
    for item, write, rep in wanted:
        domain = domains.get(item.push_id)
        account = found.get(domain) if domain else None

        def route(
            passed: tuple[str, ...], item: Item = item, account: Any = account
        ) -> routing.OwnerChoice:
            choice = choose(item.referral or {}, account, config, users)
            return replace(choice, passed_over=passed + choice.passed_over)

        new = write.op == "upsert" and item.kind == "referral"
        choice = routing.record_owner(rep, users.users, new=new, route=route if routes else None)
        if choice is None:
            continue
        if choice.user_id is None:
            why = "; ".join((choice.reason, *choice.passed_over))
            out.refused.append(
                failure_outcome(
                    item.push_id,
                    UsageError(
                        f"no owner for the new {write.sobject}: {why}", code="owner_unresolved"
                    ),  # fmt: skip
                    fields=write.fields,
                )
            )
            continue
        write.fields["OwnerId"] = choice.user_id
        if choice.source != "owner":
            why = "; ".join((choice.reason, *choice.passed_over))
            out.routed[item.push_id] = (_rep_of(users, choice.user_id), why)
    return out


def _owner_rep(item: Item) -> str | None:
    if item.kind == "referral":
        return (item.referral or {}).get(ownership.OWNER)
    return item.payload.get(ownership.OWNER) if item.kind == "field_update" else None


def record(session: Session, referral: Referral, rep: str | None, why: str) -> None:
    """Routing's choice for a referral's new record becomes the referral's owner (its field
    history, source `routing`, and the audit log with the reason in words)."""
    if referral.owner is not None:
        return  # an explicit owner arrived meanwhile: it wins
    if rep is not None:
        referral.owner = rep
        history.record(
            session, ownership.OWNER, source="routing", outcome="applied", value=rep,
            previous=None, actor="routing", referral=referral,
        )  # fmt: skip
    audit.record(
        session, "routing", "referral.owner_routed", "referral", referral.id, owner=rep, why=why
    )
