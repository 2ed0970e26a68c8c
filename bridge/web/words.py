"""Words for reviewers: reason codes (from the receiver), outcomes, the decision's fields."""

from __future__ import annotations

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
    ("from_status", "status now"),
    ("to_status", "status after"),
    ("field_updates", "referral fields"),
    ("create_referral", "new referral"),
    ("missing", "missing"),
)
