"""Finding the few referrals and members an entry could be about, through indexes only.

Never scans the referral table: every query is an indexed equality lookup —

- direct: ``public_id`` / ``external_id`` (unique) and ``sf_*_id`` (indexed);
- fuzzy: ``(program_id, email_key)``, ``(program_id, name_key)``, and the three name blocks
  ``name_block`` / ``name_rblock`` / ``name_ablock`` (Soundex, reverse Soundex and affix of the
  surname, each with the first name's Soundex) — they catch spelling variants and typos —
  and ``(program_id, phone_key)`` (a person found by phone still has to pass on name); the
  core then scores the handful found with rapidfuzz;
- members: ``(program_id, referral_code)``, ``(program_id, email_key)``,
  ``(program_id, external_id)``.

Each fuzzy lookup is capped (``FUZZY_LIMIT``) so that a very common name cannot turn a lookup
into a scan; exact name and email lookups run first, so the cap only trims the typo block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session

from bridge.receiver.matching import LookupPlan, MemberCandidate, ReferralCandidate
from bridge.store.models import Member, Referral

FUZZY_LIMIT = 200
"""Most referrals one fuzzy key may bring back."""

_REFERRAL_COLUMNS = (
    Referral.id,
    Referral.public_id,
    Referral.status,
    Referral.ever_qualified,
    Referral.external_id,
    Referral.member_id,
    Referral.first_name,
    Referral.last_name,
    Referral.email,
    Referral.company,
    Referral.phone,
    Referral.email_key,
    Referral.name_key,
    Referral.company_key,
    Referral.phone_key,
    Referral.sf_lead_id,
    Referral.sf_contact_id,
    Referral.sf_account_id,
    Referral.sf_opportunity_id,
    Referral.fields,
)
_NAMES = [c.key for c in _REFERRAL_COLUMNS]

_DIRECT_COLUMNS = (
    "public_id",
    "external_id",
    "sf_lead_id",
    "sf_contact_id",
    "sf_opportunity_id",
    "sf_account_id",
)


def _candidate(row: Any) -> ReferralCandidate:
    values = dict(zip(_NAMES, row, strict=True))
    values["fields"] = values["fields"] or {}
    return ReferralCandidate(**values)


def referral_candidate(referral: Referral) -> ReferralCandidate:
    """The matcher's view of a loaded referral."""
    return _candidate(tuple(getattr(referral, n) for n in _NAMES))


def member_candidate(member: Member) -> MemberCandidate:
    return MemberCandidate(
        id=member.id,
        name=member.name,
        email=member.email,
        email_key=member.email_key,
        referral_code=member.referral_code,
        external_id=member.external_id,
    )


def find_referrals(
    session: Session,
    program_id: int,
    plan: LookupPlan,
    *,
    referral_ids: Iterable[int] = (),
    limit: int = FUZZY_LIMIT,
) -> list[ReferralCandidate]:
    """The program's referrals that the plan's keys reach (plus `referral_ids`), deduplicated."""
    queries = []
    base = select(*_REFERRAL_COLUMNS).where(Referral.program_id == program_id)
    for name in _DIRECT_COLUMNS:
        values = plan.direct_values(name)
        if values:
            queries.append(base.where(getattr(Referral, name).in_(values)))
    ids = sorted(set(referral_ids))
    if ids:
        queries.append(base.where(Referral.id.in_(ids)))
    for column, values in (
        (Referral.email_key, plan.email_keys),
        (Referral.name_key, plan.name_keys),
        (Referral.name_block, plan.name_blocks),
        (Referral.name_rblock, plan.name_rblocks),
        (Referral.name_ablock, plan.name_ablocks),
        (Referral.phone_key, plan.phone_keys),
    ):
        if values:
            queries.append(base.where(column.in_(values)).limit(limit))
    if not queries:
        return []
    # One round trip: each lookup keeps its own LIMIT inside a subquery.
    statement = (
        union_all(*(select(q.subquery()) for q in queries)) if len(queries) > 1 else queries[0]
    )
    found: dict[int, ReferralCandidate] = {}
    for row in session.execute(statement):
        if row[0] not in found:
            found[row[0]] = _candidate(row)
    return list(found.values())


def _code_variants(values: Sequence[str]) -> list[str]:
    # Codes compare case-insensitively (normalize.code_key); the column is indexed as written,
    # and codes are issued in one case, so the common spellings hit the index.
    out: set[str] = set()
    for v in values:
        v = v.strip()
        out |= {v, v.upper(), v.lower()}
    return sorted(out)


def find_members(
    session: Session, program_id: int, plan: LookupPlan, *, member_ids: Iterable[int] = ()
) -> list[MemberCandidate]:
    from bridge.receiver.normalize import email_key

    queries = []
    base = select(Member).where(Member.program_id == program_id)
    codes = plan.member_values("referral_code")
    if codes:
        queries.append(base.where(Member.referral_code.in_(_code_variants(codes))))
    emails = sorted(
        {k for k in (email_key(v) for v in plan.member_values("member_email")) if k is not None}
    )
    if emails:
        queries.append(base.where(Member.email_key.in_(emails)))
    external = plan.member_values("member_external_id")
    if external:
        queries.append(base.where(Member.external_id.in_(external)))
    ids = sorted(set(member_ids))
    if ids:
        queries.append(base.where(Member.id.in_(ids)))
    found: dict[int, MemberCandidate] = {}
    for query in queries:
        for member in session.scalars(query):
            found.setdefault(member.id, member_candidate(member))
    return list(found.values())
