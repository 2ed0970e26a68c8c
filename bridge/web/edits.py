"""Local edits of referrals and members (API `PATCH`, the UI): saved and audited with the
field history, and pushed to Salesforce for the fields whose sync rule sends them
(`bridge.writeback.fieldsync`). The caller commits, then enqueues the pushes
(`actions.enqueue_pushes`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import audit
from bridge.receiver.rules import check_transition
from bridge.store.models import (
    Member,
    OrgConnection,
    Program,
    Push,
    Referral,
    ReferralStatusChange,
)
from bridge.vocabulary import QUALIFYING, REFERRAL_STATUSES
from bridge.web.actions import (
    ROUTING_ATTRIBUTES,
    ActionError,
    NotFound,
    Unprocessable,
    _config,
    check_owner,
    check_phase,
)
from bridge.web.bodies import MemberPatch, ReferralPatch
from bridge.web.words import reason_text
from bridge.writeback import fieldsync, gate, sync
from bridge.writeback.referrals import ENGAGEMENT, REFERRAL_ATTRIBUTES, TOUCHES


def get_referral(s: Session, referral_id: int) -> Referral:
    referral = s.get(Referral, referral_id)
    if referral is None:
        raise NotFound(f"no referral with id {referral_id}")
    return referral


def get_member(s: Session, member_id: int) -> Member:
    member = s.get(Member, member_id)
    if member is None:
        raise NotFound(f"no member with id {member_id}")
    return member


def targets(s: Session, program_id: int) -> list[fieldsync.Target]:
    """The orgs a program's referrals are written to: its connected org, else every connected
    org whose config lists the program."""
    cfg = _config()
    program = s.get(Program, program_id)
    if cfg is None or program is None:
        return []
    if program.org_connection_id is not None:
        conn = s.get(OrgConnection, program.org_connection_id)
        if conn is not None and conn.name in cfg.orgs:
            return [fieldsync.Target(conn, cfg.orgs[conn.name])]
        return []
    names = [n for n, org in cfg.orgs.items() if any(p.key == program.key for p in org.programs)]
    if not names:
        return []
    conns = s.scalars(select(OrgConnection).where(OrgConnection.name.in_(names)))
    return [fieldsync.Target(c, cfg.orgs[c.name]) for c in conns]


def edit_referral(
    s: Session, referral: Referral, data: Mapping[str, Any], *, actor: str
) -> list[Push]:
    """`data`: the referral columns given, and `fields` merged key by key (null removes);
    the routing attributes (score, touches) are routed again (`edit_routing`)."""
    routed = {k: data[k] for k in ROUTING_ATTRIBUTES if k in data}
    if "phase" in data or "owner" in data:
        found = targets(s, referral.program_id)
        check_phase(found[0].config if found else None, data.get("phase"))
        check_owner(found[0].config if found else None, data.get("owner"))
    changes = {k: v for k, v in data.items() if k != "fields" and k not in routed}
    changes.update(dict(data.get("fields") or {}))
    pushes = (
        fieldsync.edit_referral(s, referral, changes, targets(s, referral.program_id), actor=actor)
        if changes or not routed
        else []
    )
    return pushes + (edit_routing(s, referral, routed, actor=actor) if routed else [])


def edit_routing(
    s: Session, referral: Referral, changes: Mapping[str, Any], *, actor: str
) -> list[Push]:
    """Set score and touches (audited) and route the referral again: a score raised to the
    minimum starts the delay, or sends it now when there is none."""
    previous = {k: getattr(referral, k) for k in changes}
    for name, value in changes.items():
        setattr(referral, name, value)
    audit.record(
        s, actor, "referral.routing", "referral", referral.id,
        changed={k: str(v) if v is not None else None for k, v in changes.items()},
        previous={k: str(v) if v is not None else None for k, v in previous.items()},
    )  # fmt: skip
    target = gate.program_target(s, _config(), referral.program_id)
    push = gate.route_referral(s, target[0], target[1], referral) if target else None
    return [push] if push is not None and push.state == "pending" else []


def sync_referral(s: Session, referral: Referral, *, actor: str) -> Push:
    """Manual sync: send this referral now, ignoring criteria and delay (audited)."""
    target = gate.program_target(s, _config(), referral.program_id)
    if target is None:
        raise Unprocessable(
            "the referral's program is not connected to a Salesforce org", code="not_connected"
        )
    push = gate.route_referral(s, target[0], target[1], referral, manual=True, actor=actor)
    assert push is not None  # a manual sync always sends
    return push


#: What a push's fix may also save: the referral's editable columns (other names are its
#: `fields` keys) and the member's (the ids used for matching stay), as the edit forms.
REFERRAL_EDITABLE = ("first_name", "last_name", "email", "company", "phone")
MEMBER_EDITABLE = ("name", "email", "phone", "url")
_NOT_EDITABLE = {*REFERRAL_ATTRIBUTES, *TOUCHES, *ENGAGEMENT} - set(REFERRAL_EDITABLE)


def referral_sources(s: Session, push: Push) -> dict[str, str]:
    """The push's Salesforce fields that come from its referral or its member, each with its
    local name (`last_name`, `plan`, `member.phone`): those a fix can also save there."""
    referral = s.get(Referral, push.referral_id) if push.referral_id else None
    conn = s.get(OrgConnection, push.org_connection_id) if push.org_connection_id else None
    cfg = _config()
    if referral is None or conn is None or cfg is None or conn.name not in cfg.orgs:
        return {}
    program = s.get(Program, referral.program_id)
    names = fieldsync.local_names(cfg.orgs[conn.name], program.key if program else None,
                                  push.sobject_type)  # fmt: skip
    return {sf: local for sf, local in names.items() if _editable(local, referral)}


def _editable(local: str, referral: Referral) -> bool:
    if local.startswith(sync.MEMBER_PREFIX):
        return referral.member_id is not None and (
            local.removeprefix(sync.MEMBER_PREFIX) in MEMBER_EDITABLE
        )
    return local not in _NOT_EDITABLE and "." not in local  # not a sale's value


def save_on_referral(
    s: Session, push: Push, fields: Mapping[str, Any], *, actor: str
) -> tuple[list[str], list[Push]]:
    """Save a push's fixed values on its referral (or member) too, for the fields that come
    from there, by the edit the referral and member pages use (validated as `PATCH`, audited,
    field history, the sync rules' pushes). Returns the local names saved and the pushes."""
    sources = referral_sources(s, push)
    referral_data: dict[str, Any] = {}
    member_data: dict[str, Any] = {}
    for sf, value in fields.items():
        local = sources.get(sf)
        if local is None or value is None:  # null leaves the field out of the push only
            continue
        if local.startswith(sync.MEMBER_PREFIX):
            member_data[local.removeprefix(sync.MEMBER_PREFIX)] = value
        elif local in REFERRAL_EDITABLE:
            referral_data[local] = value
        else:
            referral_data.setdefault("fields", {})[local] = value
    by_local = {local: sf for sf, local in sources.items()}
    for model, data, prefix in ((ReferralPatch, referral_data, ""),
                                (MemberPatch, member_data, sync.MEMBER_PREFIX)):  # fmt: skip
        try:
            model.model_validate(data)
        except ValidationError as exc:
            bad = [by_local.get(prefix + str(e["loc"][0]), str(e["loc"][0])) for e in exc.errors()]
            raise ActionError(
                f"cannot be saved on the referral: {exc.errors()[0]['msg']} ({', '.join(bad)})",
                code="validation_error",
                fields=bad,
            ) from None
    referral = s.get(Referral, push.referral_id) if push.referral_id else None
    pushes: list[Push] = []
    if referral is not None and referral_data:
        pushes += edit_referral(s, referral, referral_data, actor=actor)
    if referral is not None and referral.member_id and member_data:
        member = get_member(s, referral.member_id)
        pushes += edit_member(s, member, member_data, actor=actor)
    saved = [*(k for k in referral_data if k != "fields"), *referral_data.get("fields", {})]
    return saved + [sync.MEMBER_PREFIX + k for k in member_data], pushes


def why_not_sent(s: Session, referral: Referral) -> str | None:
    return gate.why_not_sent(s, _config(), referral)


def edit_member(s: Session, member: Member, data: Mapping[str, Any], *, actor: str) -> list[Push]:
    program_ids = set(s.scalars(select(Referral.program_id).where(Referral.member_id == member.id)))
    return fieldsync.edit_member(
        s, member, data, {pid: targets(s, pid) for pid in program_ids}, actor=actor
    )


def change_status(
    s: Session, referral: Referral, target: str, *, override_denied: bool, actor: str
) -> None:
    """Set the status by hand under the state machine's rules (SPEC §7, the ones entries obey:
    approved is final; a denied referral moves only with the override, and never back to
    qualified once it was qualified); kept in the status history and the audit log."""
    if target not in REFERRAL_STATUSES:
        raise Unprocessable(
            f"the status is one of {', '.join(REFERRAL_STATUSES)}", fields=["status"]
        )
    move = check_transition(
        referral.status,
        target,
        ever_qualified=referral.ever_qualified,
        override_denied=override_denied,
    )
    if not move.allowed:
        raise Unprocessable(
            f"{referral.status} → {target} is not allowed: {reason_text(move.reason)}",
            fields=["status"],
        )
    old = referral.status
    referral.status = target
    referral.ever_qualified = referral.ever_qualified or target in QUALIFYING
    s.add(
        ReferralStatusChange(
            referral_id=referral.id, from_status=old, to_status=target, actor=actor
        )
    )
    audit.record(
        s,
        actor,
        "referral.status_changed",
        "referral",
        referral.id,
        from_status=old,
        to_status=target,
        by_hand=True,
    )
