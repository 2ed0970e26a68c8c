"""The sales receiver's decision: which referral, which status, which fields, and why.

``decide(...)`` is pure: it takes the entry (its records and the trigger record's previous
values), the org's receiver config, the integration user id and the candidate referrals and
members the database side found, and returns a ``Decision`` — a plain dataclass whose
``to_dict()`` is stored on the entry. Nothing here touches the database, so the review UI's
"retry" and "approve" run exactly the same rules.

Order of the checks (each one ends the decision):

1. a deleted record → ``skipped`` (``record_deleted``): there is nothing to apply;
2. the trigger record missing from ``records`` → ``failed`` (``missing_data``);
3. the trigger record last modified by the integration user → ``skipped`` (``own_write``);
4. status rules (first match wins; a rule's field absent from a present record → ``failed``
   with what is missing) and referral field mappings;
5. the target: a reviewer's choice, else direct match, else fuzzy match (ambiguous → review);
6. no referral: a matched member gets a new referral; else ``review`` (``no_match``) or, with
   ``review_when_no_member`` off, ``failed`` (``unmatched``). An entry that matched nothing and
   carries nothing a referral program cares about (no rule fired, no Referral ID, no member
   key) is ``skipped`` (``no_match``): every edit of every Lead must not flood the queue;
7. the referral's state machine (``terminal_referral``, denied rules) and the process rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from bridge.config import Receiver, parse_field_ref
from bridge.receiver import matching as mt
from bridge.receiver import rules as rl
from bridge.vocabulary import (
    APPROVED,
    DENIED,
    FAILED,
    PENDING,
    PROCESSED,
    QUALIFYING,
    REVIEW,
    SKIPPED,
)

# Every reason code an entry can carry, in words: the one place the review UI, the reports
# and docs/inbound.md ("Reason codes", checked by a test) take them from. Failures the bridge
# saves carry their own code as well (a Salesforce error code such as INSUFFICIENT_ACCESS).
REASONS = {
    "record_deleted": "the Salesforce record was deleted; nothing to apply",
    "own_write": "the change was made by the bridge's own integration user",
    "missing_data": "data needed to decide is missing from the entry (see 'missing')",
    "status_rule": "status rule number {n} (counting from 0) matched and sets the status",
    "no_status_rule": "no status rule matched; only referral fields and links apply",
    "direct_match": "the referral was found by its Referral ID / External ID / Salesforce id",
    "fuzzy_match": "the referral was found by normalized email or a similar name",
    "ambiguous_match": "several referrals match equally well; a reviewer must pick one",
    "reviewer_choice": "a reviewer chose the referral",
    "member_match": "no referral matched, but the referring member was found",
    "member_by": "how the member was found: referral_code, member_email or member_external_id",
    "referral_created": "a new referral is created under the member",
    "no_match": "no referral matched the entry",
    "referral_id_not_found": "the entry names a Referral ID or External ID that matches no "
    "referral of the receiver's program",
    "member_not_found": "the entry names a referring member that does not exist",
    "no_member": "no referral and no member: waiting for a reviewer (review_when_no_member)",
    "unmatched": "no referral and no member, and review_when_no_member is off",
    "referral_not_found": "the referral chosen by a reviewer does not exist",
    "terminal_referral": "the referral is approved, which is final",
    "denied_referral_locked": "the referral is denied and override_denied is off (and the "
    "change is no upgrade a reviewer is asked about)",
    "denied_requalify_not_allowed": "a denied referral that was qualified before cannot be "
    "qualified or approved again",
    "denied_upgrade_needs_review": "a denied referral would become qualified/approved: "
    "review_denied_upgrade asks a reviewer, who decides whether or not override_denied is on",
    "status_unchanged": "the referral already has the status the rule sets",
    "fields_updated": "referral fields mapped from Salesforce change",
    "fields_synced": "only referral fields synced from Salesforce changed (two-way field sync)",
    "engagement_synced": "only the lead phase or the owner changed, following Salesforce's",
    "phase_refused": "phase change refused",  # + why: not an inbound phase, the phase stays
    "owner_change_refused": "owner change refused",  # + the future events; reviewers are told
    "no_change": "nothing about the referral would change",
    "review_direct_match": "auto_process_direct is off: a reviewer approves direct matches",
    "review_fuzzy_match": "auto_process_fuzzy is off: a reviewer approves fuzzy matches",
    "rejected": "a reviewer rejected the entry",
    "value_too_long": "a value is longer than the referral can hold (see the error); edit the "
    "entry's fields and retry",
    "org_not_configured": "the event's org is not in the config file",
    "malformed_event": "the event could not be read; its payload is kept with the error",
    "lookup_error": "reading the related records from Salesforce failed unexpectedly",
    "receiver_error": "deciding the entry failed unexpectedly; the error says why",
}


REFUSALS = ("phase_refused", "owner_change_refused")
"""A Salesforce change of the sales engagement not taken; the code's argument says why."""


def explain(reason: str) -> str:
    """The words for a reason code (``status_rule:2`` and ``member_by:...`` included)."""
    code, _, arg = reason.partition(":")
    text = REASONS.get(code, reason)
    if arg and code in REFUSALS:
        return f"{text}: {arg}"
    return (
        text.replace("{n}", arg)
        if arg and code == "status_rule"
        else (f"{text} ({arg})" if arg else text)
    )


@dataclass
class Decision:
    """What to do with one sales entry, and every reason for it (JSON-able via to_dict)."""

    outcome: str
    reasons: list[str] = field(default_factory=list)
    match: str | None = None  # direct | fuzzy | member | reviewer
    match_source: str | None = None  # the entry's field or person that matched
    referral_id: int | None = None
    referral_public_id: str | None = None
    member_id: int | None = None
    create_referral: dict[str, Any] | None = None  # a new referral under member_id
    from_status: str | None = None
    to_status: str | None = None  # None: the status does not change
    rule: int | None = None  # index into receiver.status_rules
    field_updates: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # sf_*_id columns to fill
    candidates: list[dict[str, Any]] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # dataclasses.asdict gives the same, but deep-copies every leaf with copy.deepcopy,
        # which was a tenth of the worker's time; the values here are JSON-like, and most
        # are leaves (None, text, numbers), kept as they are.
        values = vars(self)
        return {
            name: json_copy(v) if isinstance(v, _CONTAINERS) else v
            for name in _DECISION_FIELDS
            for v in (values[name],)
        }

    @property
    def changes_referral(self) -> bool:
        return bool(
            self.to_status or self.field_updates or self.links or self.create_referral is not None
        )


_DECISION_FIELDS = tuple(f.name for f in fields(Decision))


_CONTAINERS = (dict, list, tuple)


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, tuples and immutable leaves)."""
    if isinstance(value, dict):
        return {k: json_copy(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) if isinstance(v, _CONTAINERS) else v for v in value]
    if isinstance(value, tuple):
        return tuple(json_copy(v) for v in value)
    return value


def is_own_write(last_modified_by: Any, integration_user_id: str | None) -> bool:
    """Whether a change was made by the bridge's integration user. Salesforce ids come as 15
    or 18 characters; the first 15 (case-sensitive) identify the record."""
    author = str(last_modified_by or "")
    return (
        bool(integration_user_id)
        and bool(author)
        and (author[:15] == str(integration_user_id)[:15])
    )


def _missing_error(missing: Sequence[str]) -> str:
    names = ", ".join(missing)
    return (
        f"missing data: {names} not in the Salesforce data of this entry "
        "(check that the field exists and the integration user can read it); "
        "edit the entry's fields and retry"
    )


def _referral_field_values(
    receiver: Receiver, records: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Values for the ``referral_fields`` mappings; a mapped object with no record gives none."""
    values: dict[str, Any] = {}
    missing: list[str] = []
    for name, ref in receiver.referral_fields.items():
        obj, fld = parse_field_ref(ref)
        rec = records.get(obj)
        if not isinstance(rec, Mapping):
            continue
        if fld not in rec:
            missing.append(ref)
            continue
        values[name] = rec[fld]
    return values, missing


def _new_referral_values(entry: mt.EntryInput, receiver: Receiver) -> dict[str, Any]:
    """The person a new referral is created for: the trigger's person (see matching.people)."""
    found = mt.people(entry, receiver)
    person = found[0] if found and not found[0].source.startswith(mt.ACCOUNT_CONTACTS) else None
    values: dict[str, Any] = {
        "first_name": person.first_name if person else None,
        "last_name": person.last_name if person else None,
        "email": person.email if person else None,
        "company": person.company if person else None,
        "phone": person.phone if person else None,
    }
    if person and not (person.first_name or person.last_name) and person.name:
        values["last_name"] = person.name
    return values


def _links(
    entry: mt.EntryInput, target: mt.ReferralCandidate | None, source: str | None
) -> dict[str, str]:
    """Salesforce ids to remember on the referral, so later changes match directly.

    Only empty columns are filled: an id already there is never overwritten by another record.
    """
    links: dict[str, str] = {}
    for obj, column in mt.SF_ID_COLUMNS.items():
        rec = entry.records.get(obj)
        if isinstance(rec, Mapping) and rec.get("Id"):
            links[column] = str(rec["Id"])
    if source and source.startswith(mt.ACCOUNT_CONTACTS) and "sf_contact_id" not in links:
        index = int(source.split("[", 1)[1].split("]", 1)[0])
        contacts = mt.account_contacts(entry.records)
        if index < len(contacts) and contacts[index].get("Id"):
            links["sf_contact_id"] = str(contacts[index]["Id"])
    if target is None:
        return links
    return {col: v for col, v in links.items() if not getattr(target, col)}


def _merge_candidates(*groups: list[mt.Scored]) -> list[dict[str, Any]]:
    seen: set[tuple[int, str]] = set()
    out: list[dict[str, Any]] = []
    for group in groups:
        for s in group:
            if (s.referral_id, s.via) not in seen:
                seen.add((s.referral_id, s.via))
                out.append(s.to_dict())
    return out


def decide(
    entry: mt.EntryInput,
    receiver: Receiver,
    *,
    candidates: Sequence[mt.ReferralCandidate] = (),
    members: Sequence[mt.MemberCandidate] = (),
    integration_user_id: str | None = None,
    forced_referral_id: int | None = None,
    forced_member_id: int | None = None,
    reviewed: bool = False,
    plan: mt.LookupPlan | None = None,
) -> Decision:
    """Decide what one sales entry does. See the module docstring for the order of checks.

    ``forced_referral_id`` / ``forced_member_id``: a reviewer's choice of target (or the target
    of the decision being approved); it must be among `candidates` / `members`. ``reviewed``:
    a reviewer has looked at the entry, so the process rules that send entries to review do
    not apply again. ``plan``: ``plan_lookups(entry, receiver)`` when the caller already made
    it to look the candidates up (it is not made twice).
    """
    if entry.change_type == "deleted":
        return Decision(SKIPPED, ["record_deleted"])
    trigger = entry.trigger
    if trigger is None:
        return Decision(
            FAILED,
            ["missing_data"],
            missing=[entry.sobject],
            error=f"missing data: the {entry.sobject} record that triggered this entry is "
            "not in its Salesforce data; edit the entry's fields and retry",
        )
    if is_own_write(trigger.get("LastModifiedById"), integration_user_id):
        return Decision(SKIPPED, ["own_write"])

    result = rl.evaluate_status_rules(
        receiver.status_rules, entry.records, entry.sobject, entry.previous
    )
    values, missing_fields = _referral_field_values(receiver, entry.records)
    missing = result.missing + missing_fields
    if missing:
        return Decision(FAILED, ["missing_data"], missing=missing, error=_missing_error(missing))
    reasons: list[str] = []
    if result.index is not None:
        reasons.append(f"status_rule:{result.index}")

    if plan is None:
        plan = mt.plan_lookups(entry, receiver)
    decision = Decision(REVIEW, reasons, rule=result.index)

    # ---- the target referral
    target: mt.ReferralCandidate | None = None
    ambiguous = False
    scored: list[list[mt.Scored]] = []
    if forced_referral_id is not None:
        target = next((c for c in candidates if c.id == forced_referral_id), None)
        if target is None:
            decision.outcome = FAILED
            decision.reasons.append("referral_not_found")
            decision.error = (
                f"the chosen referral {forced_referral_id} does not exist in the receiver's "
                "program; pick another referral"
            )
            return decision
        decision.match, decision.match_source = "reviewer", "reviewer"
        reasons.append("reviewer_choice")
    elif forced_member_id is None:
        direct = mt.match_direct(plan, candidates)
        scored.append(direct.candidates)
        if direct.referral is not None:
            target, decision.match, decision.match_source = (
                direct.referral,
                "direct",
                direct.source,
            )
            reasons.append("direct_match")
        elif direct.ambiguous:
            ambiguous = True
        elif receiver.target_match.fuzzy:
            fuzzy = mt.match_fuzzy(plan, candidates, receiver.target_match.fuzzy_threshold)
            scored.append(fuzzy.candidates)
            if fuzzy.referral is not None:
                target, decision.match, decision.match_source = (
                    fuzzy.referral,
                    "fuzzy",
                    fuzzy.source,
                )
                reasons.append("fuzzy_match")
            ambiguous = fuzzy.ambiguous
    decision.candidates = _merge_candidates(*scored)

    if ambiguous:
        reasons.append("ambiguous_match")
        decision.outcome = REVIEW
        return decision

    if target is None:
        return _without_referral(
            decision, entry, receiver, plan, members, result, values, forced_member_id, reviewed
        )
    return _with_referral(decision, entry, receiver, target, result, values, reviewed)


def _with_referral(
    decision: Decision,
    entry: mt.EntryInput,
    receiver: Receiver,
    target: mt.ReferralCandidate,
    result: rl.RuleResult,
    values: dict[str, Any],
    reviewed: bool,
) -> Decision:
    reasons = decision.reasons
    decision.referral_id, decision.referral_public_id = target.id, target.public_id
    decision.from_status = target.status
    if target.status == APPROVED:
        reasons.append("terminal_referral")
        decision.outcome = SKIPPED
        return decision
    # With override_denied off Salesforce may not change a denied referral, except that an
    # upgrade to qualified/approved goes to a person when review_denied_upgrade is on (SPEC
    # §7.5: "a person decides"); off, the referral is locked and the entry skipped.
    upgrade_for_review = receiver.process.review_denied_upgrade and result.status in QUALIFYING
    if target.status == DENIED and not receiver.override_denied and not upgrade_for_review:
        reasons.append("denied_referral_locked")
        decision.outcome = SKIPPED
        return decision
    upgrade = False
    if result.status is not None:
        t = rl.check_transition(
            target.status,
            result.status,
            ever_qualified=target.ever_qualified,
            override_denied=receiver.override_denied or upgrade_for_review,
        )
        if t.allowed:
            decision.to_status = result.status
            upgrade = t.upgrade_from_denied
        elif t.reason == "status_unchanged":
            reasons.append("status_unchanged")
        else:
            reasons.append(t.reason)
            decision.outcome = SKIPPED
            return decision
    else:
        reasons.append("no_status_rule")
    decision.field_updates = {k: v for k, v in values.items() if target.fields.get(k) != v}
    if decision.field_updates:
        reasons.append("fields_updated")
    decision.links = _links(entry, target, decision.match_source)
    if not decision.changes_referral:
        reasons.append("no_change")
        decision.outcome = SKIPPED
        return decision
    decision.outcome = PROCESSED
    if not reviewed:
        process = receiver.process
        if decision.match == "direct" and not process.auto_process_direct:
            reasons.append("review_direct_match")
            decision.outcome = REVIEW
        if decision.match == "fuzzy" and not process.auto_process_fuzzy:
            reasons.append("review_fuzzy_match")
            decision.outcome = REVIEW
        if upgrade and process.review_denied_upgrade:
            reasons.append("denied_upgrade_needs_review")
            decision.outcome = REVIEW
    return decision


def _without_referral(
    decision: Decision,
    entry: mt.EntryInput,
    receiver: Receiver,
    plan: mt.LookupPlan,
    members: Sequence[mt.MemberCandidate],
    result: rl.RuleResult,
    values: dict[str, Any],
    forced_member_id: int | None,
    reviewed: bool,
) -> Decision:
    reasons = decision.reasons
    if forced_member_id is not None:
        chosen = next((m for m in members if m.id == forced_member_id), None)
        member_match = mt.MemberMatch(chosen, "reviewer", "reviewer", [])
    else:
        member_match = mt.match_member(plan, members)
    decision.members = [
        {"member_id": m.id, "name": m.name, "email": m.email, "referral_code": m.referral_code}
        for m in members
    ]
    if member_match.member is not None:
        status = result.status or PENDING
        decision.match, decision.match_source = "member", member_match.source
        decision.member_id = member_match.member.id
        decision.to_status = status
        decision.field_updates = dict(values)
        decision.create_referral = _new_referral_values(entry, receiver)
        decision.links = _links(entry, None, None)
        reasons += ["member_match", f"member_by:{member_match.kind}", "referral_created"]
        decision.outcome = PROCESSED
        if not reviewed and not receiver.process.auto_process_direct:
            reasons.append("review_direct_match")
            decision.outcome = REVIEW
        return decision
    if forced_member_id is not None:
        decision.outcome = FAILED
        reasons.append("member_not_found")
        decision.error = (
            f"the chosen member {forced_member_id} does not exist in the receiver's program"
        )
        return decision

    claims_referral = bool(
        result.status is not None or plan.direct_referral_ids or plan.member_keys
    )
    if not claims_referral:
        reasons.append("no_match")
        decision.outcome = SKIPPED
        return decision
    if (
        not plan.direct_referral_ids
        and not plan.member_keys
        and not any(p.identifiable for p in mt.people(entry, receiver))
    ):
        decision.outcome = FAILED
        reasons.append("missing_data")
        decision.missing = ["Referral ID, email or name"]
        decision.error = (
            "missing data: nothing to match on — the entry has no Referral ID, no person "
            "(a single related Contact or Lead) with an email or name, and no member key; "
            "edit the entry's fields (e.g. Contact.Email) or pick a referral, then retry"
        )
        return decision
    # A Referral ID that names no referral is not a stranger: say so (a typo, or a referral of
    # another program), so the reviewer knows what to look for.
    reasons.append("referral_id_not_found" if plan.direct_referral_ids else "no_match")
    if plan.member_keys:
        reasons.append("member_not_found")
    if receiver.process.review_when_no_member:
        reasons.append("no_member")
        decision.outcome = REVIEW
    else:
        reasons.append("unmatched")
        decision.outcome = FAILED
        decision.error = (
            "unmatched: no referral and no referring member matched this entry; pick a "
            "referral or edit the entry's fields, then retry"
        )
    return decision
