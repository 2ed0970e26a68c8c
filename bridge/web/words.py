"""Reason codes (bridge.receiver) in words, for reviewers ("why it waits")."""

from __future__ import annotations

REASONS: dict[str, str] = {
    "direct_match": "The Salesforce record carries this referral's id, so it matched directly.",
    "fuzzy_match": "No referral id on the record; it matched a referral by email or name.",
    "ambiguous_match": "More than one referral matched about equally well: pick the right one.",
    "reviewer_choice": "A reviewer picked the referral.",
    "referral_not_found": "The chosen referral does not exist (any more).",
    "own_write": "The change was made by the bridge itself, so there was nothing to do.",
    "record_deleted": "The record was deleted in Salesforce; there is nothing to apply.",
    "no_match": "No referral matched this record (no referral id, and no close email or name).",
    "member_match": "No referral matched, but a referring member did.",
    "referral_created": "A new referral is created under that member.",
    "member_not_found": "The record names a referring member (code, email or id) that is "
    "not in the program.",
    "no_member": "No referral and no referring member matched, and the rules ask a person "
    "to decide.",
    "unmatched": "No referral and no referring member matched; the entry could not be placed.",
    "missing_data": "Data the rules need is missing from the Salesforce records.",
    "terminal_referral": "The referral is already approved, which is final.",
    "denied_referral_locked": "The referral is denied and override_denied is off, so Salesforce "
    "may not change it.",
    "denied_requalify_not_allowed": "The referral is denied and was qualified before; it may "
    "not be qualified again.",
    "denied_upgrade_needs_review": "The referral was denied and this change would qualify or "
    "approve it: a person must confirm that.",
    "review_fuzzy_match": "The match is fuzzy and the rules ask a person to confirm fuzzy matches.",
    "review_direct_match": "The rules ask a person to confirm even direct matches.",
    "no_status_rule": "No status rule matched this change, so the status stays as it is.",
    "status_unchanged": "The referral already has the status this change gives.",
    "fields_updated": "Referral fields are updated from Salesforce.",
    "no_change": "Nothing about the referral changes.",
    "rejected": "A reviewer rejected this entry.",
}


def reason_text(code: str) -> str:
    if code.startswith("status_rule:"):
        return f"Status rule {code.split(':', 1)[1]} (counting from 0) matched this change."
    if code.startswith("member_by:"):
        return f"The member was found by {code.split(':', 1)[1].replace('_', ' ')}."
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
