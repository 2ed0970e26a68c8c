"""Words for reviewers: reason codes (from the receiver), outcomes, the decision's fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.receiver.decision import explain


def reason_text(code: str) -> str:
    """The receiver's words for a reason code, as a sentence."""
    text = explain(code)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


WAITING_OUTCOMES = {
    "review": "This entry waits for a person: approve it, reject it, pick another referral, "
    "or edit its fields and decide it again.",
    "failed": "This entry failed. Fix what the error says (edit the fields or pick a referral) "
    "and retry, or reject it.",
    "new": "This entry is stored and waits for the receiver to decide it.",
    "processed": "This entry was processed.",
    "skipped": "This entry was skipped: there was nothing to do.",
}

#: The decision's fields a reviewer reads, in order, with their labels.
DECISION_FIELDS = (
    ("match", "matched by"),
    ("match_source", "on"),
    ("referral_public_id", "referral"),
    ("member_id", "member"),
    ("from_status", "referral status when decided"),
    ("to_status", "status it sets"),
    ("field_updates", "referral fields"),
    ("create_referral", "new referral"),
    ("missing", "missing"),
)

#: Audit actions in words ("<actor> <words>").
ACTION_WORDS = {
    "entry.processed": "decided it by the rules",
    "entry.approved": "applied the proposed change",
    "entry.retried": "decided it again",
    "entry.rejected": "rejected the entry",
    "entry.edited": "edited its fields",
    "entry.submitted": "sent it through the API",
    "referral.create": "created the referral",
    "referral.created": "created the referral",
    "referral.status_changed": "changed the referral's status",
    "referral.denied": "denied the referral",
    "member.create": "added the member",
    "push.repush": "sent the push again",
    "push.bulk_repush": "sent again the pushes a filter selected",
    "activity.create": "saved an activity",
    "login": "signed in",
    "login.failed": "failed to sign in",
    "user.create": "added the user",
    "user.locked": "locked the account",
    "user.unlock": "unlocked the account",
    "token.create": "created an API token",
    "token.revoke": "revoked an API token",
    "org.connect": "connected the org",
    "org.reconnect": "reconnected the org",
}


def audit_words(action: str, detail: Mapping[str, Any] | None) -> str:
    """An audit record in words: "applied the proposed change: now processed; referral
    pending → qualified". The raw detail stays available to show beside it."""
    d = detail or {}
    words = ACTION_WORDS.get(action, action.replace(".", " ").replace("_", " "))
    bits = []
    if d.get("outcome"):
        bits.append(f"now {d['outcome']}")
    if d.get("from_status") or d.get("to_status"):
        bits.append(f"status {d.get('from_status') or '?'} → {d.get('to_status') or '?'}")
    edits = d.get("edits") or d.get("after")
    if isinstance(edits, Mapping) and edits:
        names = [f"{o}.{f}" for o, v in edits.items() if isinstance(v, Mapping) for f in v]
        bits.append("changed " + ", ".join(names or map(str, edits)))
    if d.get("chosen_referral_id"):
        bits.append(f"chose referral {d['chosen_referral_id']}")
    if d.get("note"):
        bits.append(f"note: {d['note']}")
    if isinstance(d.get("reasons"), list) and d["reasons"]:
        bits.append("why: " + "; ".join(reason_text(str(r)).rstrip(".") for r in d["reasons"]))
    return words + (": " + "; ".join(bits) if bits else "")
