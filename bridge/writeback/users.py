"""The user mapping: the bridge's reps -> active Salesforce users, per org (config `users:`).

A rep is mapped by Salesforce id or by email; both are checked against the org's Users in
batches (`Id IN (...)`, `Email IN (...)`, 100 a query) so that an inactive or missing user is
known, never guessed. The result is cached per org for `USER_MAP_CACHE_SECONDS`, so routing a
batch of referrals costs no per-record call. Lead routing and the sales pipeline's ownership
sync both read it; `sfbridge org check` and the admin page report its problems.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from simple_salesforce import format_soql
from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import defaults
from bridge.routingconfig import RepUser, is_user_id
from bridge.store import Store
from bridge.store.models import UserMapping, utcnow
from bridge.writeback.client import LOOKUP_CHUNK, Writer, chunks


@dataclass(frozen=True)
class UserMap:
    """Each rep's active Salesforce user id (None: unmapped, missing or inactive)."""

    users: dict[str, str | None] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # rep -> why it maps to nobody

    def user(self, rep: str | None) -> str | None:
        return self.users.get(rep) if rep else None

    @property
    def active_ids(self) -> frozenset[str]:
        return frozenset(u for u in self.users.values() if u)

    def owner(self, value: str | None) -> str | None:
        """A fallback as written in the config: a rep, or a Salesforce user id as it is."""
        if not value:
            return None
        if value in self.users:
            return self.users[value]
        return value if is_user_id(value) else None


def _id15(user_id: str) -> str:
    return user_id[:15]


def resolve(writer: Writer, refs: Mapping[str, RepUser]) -> UserMap:
    """Look every mapped rep up in the org: by id and by email, batched."""
    ids = sorted({r.salesforce_id for r in refs.values() if r.salesforce_id})
    emails = sorted({r.email.lower() for r in refs.values() if r.email})
    found: list[dict[str, object]] = []
    for column, values in (("Id", ids), ("Email", emails)):
        for part in chunks(values, LOOKUP_CHUNK):
            soql = format_soql(
                "SELECT Id, Email, IsActive FROM User WHERE {column:literal} IN {values}",
                column=column,
                values=part,
            )
            found += writer.query(soql)
    by_id = {_id15(str(u["Id"])): u for u in found}
    by_email: dict[str, list[dict[str, object]]] = {}
    for user in found:
        by_email.setdefault(str(user.get("Email") or "").lower(), []).append(user)

    users: dict[str, str | None] = {}
    problems: dict[str, str] = {}
    for rep, ref in refs.items():
        if ref.salesforce_id:
            by_that_id = by_id.get(_id15(ref.salesforce_id))
            candidates = [by_that_id] if by_that_id else []
            label = f"Salesforce user {ref.salesforce_id}"
            missing = f"there is no {label}"
        else:
            candidates = by_email.get(str(ref.email).lower(), [])
            label = f"the Salesforce user with email {ref.email}"
            missing = f"no Salesforce user has the email {ref.email}"
        active = [u for u in candidates if u.get("IsActive")]
        if active:
            users[rep] = str(active[0]["Id"])
        elif candidates:
            users[rep] = None
            problems[rep] = f"{label} is inactive"
        else:
            users[rep] = None
            problems[rep] = missing
    return UserMap(users, problems)


_cache: dict[str, tuple[float, tuple[tuple[str, str | None, str | None], ...], UserMap]] = {}


def user_map(
    writer: Writer,
    org_key: str,
    refs: Mapping[str, RepUser],
    *,
    clock: Callable[[], float] = time.monotonic,
    keep: Callable[[UserMap], None] | None = None,
) -> UserMap:
    """The org's user mapping, resolved at most once per `USER_MAP_CACHE_SECONDS` (and again
    when the config's mapping changes); `keep` receives each fresh resolution (to `save` it)."""
    if not refs:
        return UserMap()
    shape = tuple(sorted((rep, r.salesforce_id, r.email) for rep, r in refs.items()))
    cached = _cache.get(org_key)
    now = clock()
    if cached is not None and cached[0] > now and cached[1] == shape:
        return cached[2]
    resolved = resolve(writer, refs)
    _cache[org_key] = (now + defaults.USER_MAP_CACHE_SECONDS, shape, resolved)
    if keep is not None:
        keep(resolved)
    return resolved


def save(store: Store, org_connection_id: int, mapping: UserMap) -> None:
    """Keep the resolution for the admin page (one row per rep; reps no longer mapped go)."""
    with store.session() as session:
        rows = {
            row.rep: row
            for row in session.scalars(
                select(UserMapping).where(UserMapping.org_connection_id == org_connection_id)
            )
        }
        for rep, row in rows.items():
            if rep not in mapping.users:
                session.delete(row)
        for rep, user_id in mapping.users.items():
            row = rows.get(rep) or UserMapping(org_connection_id=org_connection_id, rep=rep)
            row.salesforce_user_id = user_id
            row.problem = mapping.problems.get(rep)
            row.resolved_at = utcnow()
            session.add(row)


def saved(session: Session) -> list[UserMapping]:
    """Every org's last resolution, by org and rep."""
    return list(
        session.scalars(
            select(UserMapping).order_by(UserMapping.org_connection_id, UserMapping.rep)
        )
    )


def forget(org_key: str | None = None) -> None:
    """Drop the cached mapping (one org, or all): e.g. after the admin fixed a user."""
    if org_key is None:
        _cache.clear()
    else:
        _cache.pop(org_key, None)
