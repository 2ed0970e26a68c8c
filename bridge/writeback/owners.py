"""The user mapping: which Salesforce user a rep (a user of the sales-engagement tool) is.

`writeback.users` maps each rep id to a Salesforce user, by id or by email:

    writeback:
      users:
        rep-17: {user_id: 005...}
        rep-21: {email: dana@example.com}

`resolve(writer, users)` answers every rep with its **active** Salesforce user id, or None with
the reason (no such user, inactive, several users with the email), in one query per batch
(`Id IN (...) OR Email IN (...)`, via format_soql). Sales and demos set OwnerId from it; lead
routing's `lead_owner` takes the same `{rep: user id | None}` mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import UserRef
from bridge.writeback.client import LOOKUP_CHUNK, Writer, chunks
from bridge.writeback.sales_lookups import any_in


@dataclass(frozen=True)
class Owner:
    rep: str
    user_id: str | None  # the active Salesforce user; None: unresolved
    reason: str


def resolve(writer: Writer, users: Mapping[str, UserRef]) -> dict[str, Owner]:
    """Every rep of `users` with its active Salesforce user (batched lookups)."""
    ids = sorted({u.user_id for u in users.values() if u.user_id})
    emails = sorted({u.email.lower() for u in users.values() if u.email})
    found: list[dict[str, Any]] = []
    wanted = [("i", v) for v in ids] + [("e", v) for v in emails]
    for part in chunks(wanted, LOOKUP_CHUNK):
        by_id = [v for k, v in part if k == "i"]
        by_email = [v for k, v in part if k == "e"]
        soql = any_in(
            "SELECT Id, Email, IsActive FROM User WHERE {}", ("Id", by_id), ("Email", by_email)
        )
        found += writer.query(soql)
    by_user = {str(u["Id"])[:15]: u for u in found}
    by_mail: dict[str, list[dict[str, Any]]] = {}
    for u in found:
        by_mail.setdefault(str(u.get("Email") or "").lower(), []).append(u)
    out = {}
    for rep, ref in users.items():
        if ref.user_id:
            match = [by_user[ref.user_id[:15]]] if ref.user_id[:15] in by_user else []
            what = f"user {ref.user_id}"
        else:
            match = by_mail.get(str(ref.email).lower(), [])
            what = f"user with the email {ref.email}"
        active = [u for u in match if u.get("IsActive")]
        if len(active) == 1:
            out[rep] = Owner(rep, str(active[0]["Id"]), f"the active {what}")
        elif len(active) > 1:
            out[rep] = Owner(rep, None, f"{len(active)} active users have the email {ref.email}")
        elif match:
            out[rep] = Owner(rep, None, f"the {what} is inactive")
        else:
            out[rep] = Owner(rep, None, f"no {what} in the org")
    return out
