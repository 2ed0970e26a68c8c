"""Reason codes in words, for reviewers ("why it waits")."""

from __future__ import annotations

REASONS: dict[str, str] = {
    "direct_match": "The Salesforce record carries this referral's id, so it matched directly.",
    "fuzzy_match": "No referral id on the record; it matched a referral by email or name.",
    "own_write": "The change was made by the bridge itself, so there was nothing to do.",
    "no_match": "No referral matched this record (no referral id, and no close email or name).",
    "unmatched": "No referral and no referring member matched; the entry could not be placed.",
    "terminal_referral": "The referral is already approved, which is final.",
    "denied_upgrade_needs_review": (
        "The referral was denied and this change would qualify or approve it: a person must "
        "confirm that."
    ),
    "review_fuzzy": "The match is fuzzy and the rules ask a person to confirm fuzzy matches.",
    "review_direct": "The rules ask a person to confirm even direct matches.",
    "review_no_member": (
        "No referral matched and no member could be found, and the rules ask a person to decide."
    ),
    "ambiguous_match": "More than one referral matched about equally well: pick the right one.",
    "member_match": "No referral matched, but a referring member did: a new referral is made.",
    "no_status_rule": "No status rule matched this change, so the status stays as it is.",
    "denied_locked": "The referral is denied and override_denied is off, so Salesforce may not "
    "change it.",
    "rejected_by_reviewer": "A reviewer rejected this entry.",
    "deleted": "The record was deleted in Salesforce.",
}


def reason_text(code: str) -> str:
    if code.startswith("status_rule:"):
        return f"Status rule {code.split(':', 1)[1]} matched this change."
    return REASONS.get(code, code.replace("_", " ").capitalize() + ".")


WAITING_OUTCOMES = {
    "review": "This entry waits for a person: approve it, reject it, pick another referral, "
    "or edit its fields and decide it again.",
    "failed": "This entry failed. Fix what the error says (edit the fields or pick a referral) "
    "and retry, or reject it.",
    "new": "This entry is stored and waits for the receiver to decide it.",
    "processed": "This entry was processed.",
    "skipped": "This entry was skipped: there was nothing to do.",
}
