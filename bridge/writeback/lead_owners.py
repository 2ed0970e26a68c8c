"""The owner of each new Lead (or Contact) a batch of referral pushes creates.

At send time, for the records the batch creates (not records updated because they existed):

1. **Account ownership rules** (`routing.account_rules`): the person's Account — the oldest
   with the referral's root domain, read with the fields the rules need in one batched query —
   in the first segment it matches gives the owner (its owner field, then by a second field,
   else the rule's fallback user);
2. else the **Lead owner priority** (`routing.lead_owner`): meeting, routed, closed — the
   first switched-on rep who maps to an active Salesforce user (`bridge.writeback.users`),
   else its fallback user;
3. else the fallback for companies matching no segment (`routing.no_segment_fallback`).

Nobody found: the push fails with `owner_unresolved` (the record is never silently owned by
the integration user). Without `lead_owner` and `account_rules`, no owner is set at all. The
decisions are the pure core's (`bridge.writeback.routing`); this module gathers their inputs
in batches (the user mapping is cached per org) and writes `OwnerId`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bridge.config import OrgConfig
from bridge.errors import UsageError
from bridge.routingconfig import Routing
from bridge.writeback import accounts, routing
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


def assign(
    writer: Writer,
    org_config: OrgConfig,
    pairs: list[tuple[Item, Write]],
    keep: Callable[[UserMap], None] | None = None,
) -> list[Outcome]:
    """Set OwnerId on the records these writes create; returns the pushes that cannot be
    owned (and must not be written), as failures with the reason."""
    config = org_config.routing
    new = [(i, w) for i, w in pairs if w.op == "upsert" and w.sobject in ("Lead", "Contact")]
    if not config.sets_owner or not new:
        return []
    org_key = str(new[0][0].org_connection_id)
    users = user_map(writer, org_key, org_config.users, keep=keep)
    found: dict[str, Any] = {}
    domains = {i.push_id: accounts.referral_domain(i.referral or {}) for i, _w in new}
    if config.account_rules and any(domains.values()):
        found = accounts.find_accounts(
            writer, {d for d in domains.values() if d}, None, config.account_fields()
        )
    refused: list[Outcome] = []
    for item, write in new:
        domain = domains[item.push_id]
        choice = choose(item.referral or {}, found.get(domain) if domain else None, config, users)
        if choice.user_id is None:
            why = "; ".join((choice.reason, *choice.passed_over))
            refused.append(
                failure_outcome(
                    item.push_id,
                    UsageError(
                        f"no owner for the new {write.sobject}: {why}", code="owner_unresolved"
                    ),  # fmt: skip
                    fields=write.fields,
                )
            )
        else:
            write.fields["OwnerId"] = choice.user_id
    return refused
