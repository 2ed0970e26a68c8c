"""What a reviewer reads about one entry before deciding it: who it is about, the referral and
its referring member, what applying it would do, how it matched, and why it waits.

Pure: built from the entry, its referral and member rows and the org's receiver config (None
when the config is unknown), so the queue, the bulk confirmation and the entry page say the
same thing in the same words.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.config import Receiver
from bridge.store.models import Member, Referral, SalesEntry
from bridge.vocabulary import APPROVED, DENIED, PENDING, QUALIFIED, REVIEW
from bridge.web.words import reason_text

#: The verb a button uses for moving a referral to a status.
STATUS_VERBS = {
    QUALIFIED: "qualify",
    APPROVED: "approve the referral",
    PENDING: "set back to pending",
    DENIED: "deny",
}

#: Short words for the queue; the receiver's full sentence (bridge.receiver.decision.REASONS)
#: and the code stay behind a disclosure.
PLAIN_REASONS = {
    "status_rule": "a status rule matched",
    "no_status_rule": "no status rule matched",
    "direct_match": "found by its referral id",
    "fuzzy_match": "found by a similar email or name",
    "ambiguous_match": "several referrals match equally well: pick one",
    "reviewer_choice": "picked by a reviewer",
    "member_match": "no referral, but the referring member was found",
    "member_by": "member found",
    "referral_created": "a new referral is added under the member",
    "no_match": "no referral matched",
    "member_not_found": "the member it names does not exist",
    "no_member": "no referral and no member",
    "unmatched": "nobody matched: no referral, no member",
    "referral_not_found": "the chosen referral does not exist",
    "terminal_referral": "the referral is already approved (final)",
    "denied_referral_locked": "the referral is denied and stays denied",
    "denied_requalify_not_allowed": "a denied referral cannot be qualified again",
    "denied_upgrade_needs_review": "it would re-open a denied referral",
    "status_unchanged": "the referral already has that status",
    "fields_updated": "referral fields change",
    "no_change": "nothing would change",
    "review_direct_match": "direct matches wait for a reviewer",
    "review_fuzzy_match": "fuzzy matches wait for a reviewer",
    "missing_data": "data needed to decide is missing",
    "own_write": "the bridge's own change",
    "record_deleted": "the record was deleted",
    "rejected": "rejected by a reviewer",
    "phase_refused": "a phase change Salesforce may not make",
    "owner_change_refused": "an owner change refused: future events",
}

#: The config setting behind a reason, for the disclosure.
CONFIG_DETAIL = {
    "review_direct_match": "receiver.process.auto_process_direct is false",
    "review_fuzzy_match": "receiver.process.auto_process_fuzzy is false",
    "denied_upgrade_needs_review": "receiver.process.review_denied_upgrade is true",
    "denied_referral_locked": "receiver.override_denied is false",
    "no_member": "receiver.process.review_when_no_member is true",
    "unmatched": "receiver.process.review_when_no_member is false",
}


@dataclass(frozen=True)
class Reason:
    code: str
    words: str  # short, for the queue
    sentence: str  # the receiver's explanation
    config: str  # the setting or rule behind it, or ""


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    company: str


@dataclass
class Triage:
    """One entry as the queue shows it."""

    entry: SalesEntry
    person: Person
    referral: Referral | None
    member: Member | None
    change: str  # "pending → qualified", "would deny", ...
    effect: str  # what applying does, for the bulk summary: "→ qualified", "new referral", ...
    action: str | None  # the apply button's words, or None when there is nothing to apply
    match: str
    amount: Any
    reasons: list[Reason] = field(default_factory=list)
    age: str = ""
    superseded_by: int | None = None
    same_record: int = 1  # entries stored for the same Salesforce record


def age_words(then: datetime | None, now: datetime) -> str:
    """ "4 min", "3 h", "2 d": how long ago, in the largest whole unit."""
    if then is None:
        return ""
    seconds = max(0, int((now - then).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def person(entry: SalesEntry) -> Person:
    records = entry.records or {}
    record = records.get(entry.sobject_type) or {}
    name = record.get("Name") or " ".join(
        str(record[k]) for k in ("FirstName", "LastName") if record.get(k)
    )
    account = records.get("Account") or {}
    company = record.get("Company") or account.get("Name") or ""
    return Person(str(name or ""), str(record.get("Email") or ""), str(company))


def proposal(entry: SalesEntry) -> tuple[str, str, str | None]:
    """(change in words, effect key, apply button words) for the entry's decision. Only an
    entry in review can be applied; for the others the words say what was decided."""
    if "rejected" in (entry.reasons or []):
        return "rejected: nothing changed", "nothing", None
    change, effect, action = _proposal(entry)
    return (change, effect, action) if entry.outcome == REVIEW else (change, "nothing", None)


def _proposal(entry: SalesEntry) -> tuple[str, str, str | None]:
    d = entry.decision or {}
    to_status = d.get("to_status")
    if entry.outcome == "failed":
        return "none until fixed", "nothing", None
    if d.get("create_referral") is not None:
        status = to_status or PENDING
        return f"new referral ({status})", "new referral", "Apply: add referral"
    if d.get("referral_id") is None:
        return "no referral proposed", "nothing", None
    if to_status == DENIED:
        return "would deny", f"→ {DENIED}", "Deny"
    if to_status:
        verb = STATUS_VERBS.get(to_status, f"set {to_status}")
        return (
            f"{d.get('from_status') or '?'} → {to_status}",
            f"→ {to_status}",
            f"Apply: {verb}",
        )
    if d.get("field_updates"):
        names = ", ".join(sorted(d["field_updates"]))
        return f"fields: {names}", "fields only", "Apply: update fields"
    if d.get("links"):
        return "link the Salesforce record", "fields only", "Apply: link the record"
    return "no change", "nothing", "Apply: no change"


def match_words(entry: SalesEntry, member: Member | None) -> str:
    """How the entry matched: "direct (Referral_ID__c)", "fuzzy 0.93", "member code ANNA"."""
    return _match(entry.decision or {}, entry.candidates or [], entry.reasons or [], member)


def _match(d: Mapping[str, Any], candidates: list[Any], reasons: list[str], member: Any) -> str:
    how = d.get("match")
    if how == "direct":
        return f"direct ({d.get('match_source') or 'id'})"
    if how == "fuzzy":
        scores = [
            c.get("score")
            for c in candidates
            if isinstance(c, Mapping) and c.get("referral_id") == d.get("referral_id")
        ]
        best = max((s for s in scores if isinstance(s, (int, float))), default=None)
        return "fuzzy" + (f" {best:.2f}" if best is not None else "")
    if how == "member":
        kind = next((r.split(":", 1)[1] for r in reasons if r.startswith("member_by:")), "")
        if kind == "referral_code" and member is not None and member.referral_code:
            return f"member code {member.referral_code}"
        return f"member by {kind.replace('_', ' ') or 'key'}"
    if how == "reviewer":
        before = {**(d.get("matched_before") or {}), "referral_id": d.get("referral_id")}
        if before.get("match") in ("direct", "fuzzy", "member"):
            return f"reviewer's choice (was {_match(before, candidates, reasons, member)})"
        return "reviewer's choice"
    if "ambiguous_match" in reasons:
        return f"ambiguous ({len(candidates)} candidates)"
    return "no match"


def amount(entry: SalesEntry) -> Any:
    updates = (entry.decision or {}).get("field_updates") or {}
    return next((v for k, v in updates.items() if "amount" in k.lower()), None)


def _rule_words(receiver: Receiver | None, index: str) -> str:
    if receiver is None or not index.isdecimal() or int(index) >= len(receiver.status_rules):
        return ""
    rule = receiver.status_rules[int(index)]
    value = "" if rule.op == "is_blank" else f" {rule.value!r}"
    return f"status_rules[{index}]: {rule.object}.{rule.field} {rule.op}{value} → {rule.status}"


def plain(code: str) -> str:
    """A reason code in a few words: "fuzzy matches wait for a reviewer"."""
    base, _, arg = code.partition(":")
    if base == "member_by" and arg:
        return f"member found by {arg.replace('_', ' ')}"
    return PLAIN_REASONS.get(base, base.replace("_", " "))


def reasons(entry: SalesEntry, receiver: Receiver | None) -> list[Reason]:
    out = []
    for code in entry.reasons or []:
        base, _, arg = code.partition(":")
        words = plain(code)
        config = (
            _rule_words(receiver, arg) if base == "status_rule" else CONFIG_DETAIL.get(base, "")
        )
        out.append(Reason(code, words, reason_text(code), config))
    return out


def triage(
    entry: SalesEntry,
    referral: Referral | None,
    member: Member | None,
    receiver: Receiver | None,
    now: datetime,
) -> Triage:
    change, effect, action = proposal(entry)
    return Triage(
        entry=entry,
        person=person(entry),
        referral=referral,
        member=member,
        change=change,
        effect=effect,
        action=action,
        match=match_words(entry, member),
        amount=amount(entry),
        reasons=reasons(entry, receiver),
        age=age_words(entry.created_at, now),
    )


def effects_summary(effects: Iterable[str], *, rejected: int = 0) -> str:
    """ "3 referrals → qualified, 1 referral → denied" for the bulk confirmation."""
    counts = Counter(effects)
    parts = []
    for effect, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if effect.startswith("→"):
            parts.append(f"{n} referral{'s' if n != 1 else ''} {effect}")
        elif effect == "new referral":
            parts.append(f"{n} new referral{'s' if n != 1 else ''}")
        elif effect == "fields only":
            parts.append(f"{n} referral{'s' if n != 1 else ''} with changed fields")
        else:
            parts.append(f"{n} entr{'ies' if n != 1 else 'y'} with nothing to apply")
    if rejected:
        parts.append(f"{rejected} entr{'ies' if rejected != 1 else 'y'} rejected")
    return ", ".join(parts) or "nothing"


def group_by_record(rows: list[Triage]) -> list[Triage]:
    """Rows for the same Salesforce record next to each other, in first-seen order."""
    order: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rows):
        order.setdefault((r.entry.sobject_type, r.entry.record_id or f"#{r.entry.id}"), i)
    return sorted(
        rows,
        key=lambda r: order[(r.entry.sobject_type, r.entry.record_id or f"#{r.entry.id}")],
    )


def differences(who: Person, referral: Referral | None) -> list[str]:
    """How a referral's name and email differ from the record's person (empty when they agree
    or the record has no such value): a warning before a reviewer picks it."""
    if referral is None:
        return []
    out = []
    email = (referral.email or "").strip().lower()
    if who.email and email != who.email.strip().lower():
        out.append(f"email {referral.email or '(none)'} ≠ the record's {who.email}")
    name = " ".join(filter(None, (referral.first_name, referral.last_name)))
    if who.name and " ".join(name.lower().split()) != " ".join(who.name.lower().split()):
        out.append(f"name {name or '(none)'} ≠ the record's {who.name}")
    return out
