"""Finding the few referrals and members an entry could be about, through indexes only.

Never scans the referral table: every query is an indexed equality lookup —

- direct: ``public_id`` / ``external_id`` (unique) and ``(program_id, sf_*_id)`` (indexed);
- fuzzy: ``email_key``, ``(program_id, name_key)``, and the four name blocks
  ``name_block`` / ``name_rblock`` / ``name_ablock`` / ``name_pblock`` (Soundex, reverse
  Soundex, affix and first three letters of the surname, each with the first name's
  Soundex) — they catch spelling variants and typos — and ``(program_id, phone_key)`` (a
  person found by phone still has to pass on name); the core then scores the handful found
  with rapidfuzz;
- members: ``(program_id, referral_code)``, ``(program_id, email_key)``,
  ``(program_id, external_id)``.

Each fuzzy lookup is capped (``FUZZY_LIMIT``, lowest ids first) so that a very common name
cannot turn a lookup into a scan; the cap is per lookup, so a crowded typo block cannot push
out an exact email or name match.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import any_, bindparam, func, select, true, union_all
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from bridge.matchkeys import email_key
from bridge.receiver.matching import LookupPlan, MemberCandidate, ReferralCandidate
from bridge.store.arrays import among
from bridge.store.models import Member, Referral

FUZZY_LIMIT = 200
"""Most referrals one fuzzy key may bring back."""

POOL_KEYS_PER_QUERY = 2000
"""Most lookup keys in one query of a CandidatePool (bound parameters are limited)."""

# The columns a candidate is built from, in the order of its fields (so a row gives them by
# position).
_REFERRAL_COLUMNS = tuple(getattr(Referral, f.name) for f in dataclasses.fields(ReferralCandidate))
_NAMES = [c.key for c in _REFERRAL_COLUMNS]

_DIRECT_COLUMNS = (
    "public_id",
    "external_id",
    "sf_lead_id",
    "sf_contact_id",
    "sf_opportunity_id",
    "sf_account_id",
)

#: Fuzzy lookups: the Referral column and the LookupPlan property holding its keys.
_FUZZY_COLUMNS = (
    ("email_key", "email_keys"),
    ("name_key", "name_keys"),
    ("name_block", "name_blocks"),
    ("name_rblock", "name_rblocks"),
    ("name_ablock", "name_ablocks"),
    ("name_pblock", "name_pblocks"),
    ("phone_key", "phone_keys"),
)


def referral_candidate(referral: Referral) -> ReferralCandidate:
    """The matcher's view of a loaded referral."""
    return ReferralCandidate.of_row([getattr(referral, n) for n in _NAMES])


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
    for name, attr in _FUZZY_COLUMNS:
        column, values = getattr(Referral, name), getattr(plan, attr)
        if values:
            # In id order, so that the cap keeps the same referrals whichever way they are
            # looked up (one entry here, a whole batch in CandidatePool).
            queries.append(base.where(column.in_(values)).order_by(Referral.id).limit(limit))
    if not queries:
        return []
    # One round trip: each lookup keeps its own LIMIT inside a subquery.
    statement = (
        union_all(*(select(q.subquery()) for q in queries)) if len(queries) > 1 else queries[0]
    )
    found: dict[int, ReferralCandidate] = {}
    for row in session.execute(statement):
        if row[0] not in found:
            found[row[0]] = ReferralCandidate.of_row(row)
    return list(found.values())


def _code_variants(values: Sequence[str]) -> list[str]:
    # Codes compare case-insensitively (matchkeys.code_key); the column is indexed as written,
    # and codes are issued in one case, so the common spellings hit the index.
    out: set[str] = set()
    for v in values:
        v = v.strip()
        out |= {v, v.upper(), v.lower()}
    return sorted(out)


def _member_lookups(plan: LookupPlan) -> list[tuple[str, list[str]]]:
    """(Member column, values) per member key kind of the plan, in the order they are tried."""
    out = []
    codes = plan.member_values("referral_code")
    if codes:
        out.append(("referral_code", _code_variants(codes)))
    emails = sorted(
        {k for k in (email_key(v) for v in plan.member_values("member_email")) if k is not None}
    )
    if emails:
        out.append(("email_key", emails))
    external = plan.member_values("member_external_id")
    if external:
        out.append(("external_id", external))
    return out


def find_members(
    session: Session, program_id: int, plan: LookupPlan, *, member_ids: Iterable[int] = ()
) -> list[MemberCandidate]:
    base = select(Member).where(Member.program_id == program_id)
    queries = [base.where(getattr(Member, c).in_(v)) for c, v in _member_lookups(plan)]
    ids = sorted(set(member_ids))
    if ids:
        queries.append(base.where(Member.id.in_(ids)))
    found: dict[int, MemberCandidate] = {}
    for query in queries:
        for member in session.scalars(query.order_by(Member.id)):
            found.setdefault(member.id, member_candidate(member))
    return list(found.values())


# ---- a whole batch at once --------------------------------------------------------------------

_MEMBER_COLUMNS = (
    Member.id,
    Member.name,
    Member.email,
    Member.email_key,
    Member.referral_code,
    Member.external_id,
)
_KEY_COLUMNS = _DIRECT_COLUMNS + tuple(name for name, _attr in _FUZZY_COLUMNS)
_BLOCK_COLUMNS = ("name_block", "name_rblock", "name_ablock", "name_pblock")
# A pool row is a candidate's columns, then the blocks; its keys, in _KEY_COLUMNS' order.
_keys_of_row = operator.itemgetter(*((*_NAMES, *_BLOCK_COLUMNS).index(c) for c in _KEY_COLUMNS))


def _direct_arm(reached: Any, name: str, program_id: Any, dialect: str) -> Any:
    """The ids of the program's referrals whose `name` is one of the values bound as `name`.

    On PostgreSQL each value is looked up by itself (a lateral lookup per value of the
    array): the Salesforce ids' and external ids' indexes are partial, ``(program_id, id)
    WHERE id IS NOT NULL``, and with ``= ANY`` the planner may read the program's whole
    index and filter it, which its statistics price at nothing while the column is still
    all NULL there (a store loaded before any referral was linked: until the next ANALYZE,
    every chunk read all the referrals linked since, 1,975 rows filtered a chunk at 10,000
    referrals). An equality per value is always both columns of the index."""
    column = reached.c[name]
    if dialect != "postgresql":
        return select(reached.c.id).where(
            reached.c.program_id == program_id, among(column, name, dialect)
        )
    values = (
        func.unnest(bindparam(name, type_=postgresql.ARRAY(column.type)))
        .table_valued("value")
        .render_derived()
    )
    found = (
        select(reached.c.id)
        .where(reached.c.program_id == program_id, column == values.c.value)
        .offset(0)  # kept a lookup per value: the planner does not pull the subquery up
        .lateral()
    )
    return select(found.c.id).select_from(values).join(found, true())


@functools.lru_cache(maxsize=128)
def _pool_statement(columns: tuple[str, ...], dialect: str) -> Any:
    """The referrals of a program that the given key columns reach (values bound at execution:
    one parameter per column, ``bridge.store.arrays.among``, plus ``program_id`` and
    ``limit``). Built once per set of columns and database, so a batch pays neither building
    nor compiling it again.

    Each key column is one arm that reads only ids from that column's index (the cap per
    key ranks ids alone); the rows are then read once per referral reached. Reading whole
    rows in every arm read each one as many times as keys reached it (twice on average for
    a chunk of 50) and ranked whole rows: most of the statement's time.
    """
    program_id: Any = bindparam("program_id")
    reached = Referral.__table__.alias()
    arms: list[Any] = []
    for name in columns:
        column = reached.c[name]
        lookup = (reached.c.program_id == program_id, among(column, name, dialect))
        if name in _DIRECT_COLUMNS:
            arms.append(_direct_arm(reached, name, program_id, dialect))
            continue
        # The cap per key, lowest ids first: for one entry's keys this keeps what
        # find_referrals' LIMIT keeps, and a common name still cannot bring back ids
        # beyond the cap.
        ranked = (
            select(
                reached.c.id,
                func.row_number().over(partition_by=column, order_by=reached.c.id).label("rank"),
            )
            .where(*lookup)
            .subquery()
        )
        arms.append(select(ranked.c.id).where(ranked.c.rank <= bindparam("limit")))
    ids: Any = union_all(*arms) if len(arms) > 1 else arms[0]
    # PostgreSQL may hash-join `id IN (arms)` with a scan of the table when it expects the
    # arms to bring many ids (it did when they brought whole rows); an array of the ids is
    # one probe of the primary key per id whatever it expects.
    wanted = (
        Referral.id == any_(func.array(ids.scalar_subquery()))
        if dialect == "postgresql"
        else Referral.id.in_(ids)
    )
    blocks = [getattr(Referral, c) for c in _BLOCK_COLUMNS]
    return select(*_REFERRAL_COLUMNS, *blocks).where(wanted)


class CandidatePool:
    """The referrals and members a whole batch of entries can reach, fetched in one query each
    (the referrals in a few for a batch with thousands of keys).

    ``referrals(plan)`` and ``members(plan)`` then give each entry of the batch what
    ``find_referrals`` / ``find_members`` would find for it alone — the same rows, under the
    same cap (``FUZZY_LIMIT`` per fuzzy lookup, lowest ids first) — for each plan given to
    ``fetch`` (and only for those). ``update(referral)`` records a referral the batch has just
    changed or created, so that a later entry of the same batch sees it as it is now, exactly
    as a fresh lookup would.
    """

    def __init__(self, limit: int = FUZZY_LIMIT) -> None:
        self.limit = limit
        self._referrals: dict[int, ReferralCandidate] = {}
        self._keys: dict[int, list[tuple[str, str]]] = {}  # referral id -> its indexed keys
        self._index: dict[str, dict[str, set[int]]] = {c: {} for c in _KEY_COLUMNS}
        # The keys the batch's plans look up: only those are indexed (the plans given to
        # fetch are the only ones the pool is asked about).
        self._wanted: dict[str, set[str]] = {c: set() for c in _KEY_COLUMNS}
        self._members: dict[int, MemberCandidate] = {}
        # The plans the pool was read for, by the id() of the entry each belongs to, so that
        # the writer reusing the pool does not plan the same entries again.
        self.planned: dict[int, LookupPlan] = {}
        self._member_index: dict[str, dict[str, set[int]]] = {
            "referral_code": {},
            "email_key": {},
            "external_id": {},
        }

    @classmethod
    def fetch(
        cls,
        session: Session,
        program_id: int,
        plans: Iterable[LookupPlan],
        *,
        limit: int = FUZZY_LIMIT,
    ) -> CandidatePool:
        pool = cls(limit)
        plans = list(plans)
        for name in _DIRECT_COLUMNS:
            pool._wanted[name] = {v for p in plans for v in p.direct_values(name)}
        for name, attr in _FUZZY_COLUMNS:
            pool._wanted[name] = {v for p in plans for v in getattr(p, attr)}
        pool._fetch_referrals(session, program_id)
        pool._fetch_members(session, program_id, plans)
        return pool

    def covers(self, plans: Iterable[LookupPlan]) -> bool:
        """Whether the pool was fetched for (at least) every key of these plans."""
        for plan in plans:
            for name in _DIRECT_COLUMNS:
                if not self._wanted[name].issuperset(plan.direct_values(name)):
                    return False
            for name, attr in _FUZZY_COLUMNS:
                if not self._wanted[name].issuperset(getattr(plan, attr)):
                    return False
        return True

    # ---- loading

    def _fetch_referrals(self, session: Session, program_id: int) -> None:
        keys = [(c, v) for c in _KEY_COLUMNS for v in sorted(self._wanted[c])]
        # Usually one query; a batch with very many keys (an account with hundreds of
        # contacts) in several, within the databases' limits on bound parameters. The cap is
        # per key, so splitting the keys changes nothing found.
        for start in range(0, len(keys), POOL_KEYS_PER_QUERY):
            params: dict[str, Any] = {}
            for column, value in keys[start : start + POOL_KEYS_PER_QUERY]:
                params.setdefault(column, []).append(value)
            statement = _pool_statement(tuple(params), session.get_bind().dialect.name)
            params.update(program_id=program_id, limit=self.limit)
            for row in session.execute(statement, params):
                if row[0] in self._referrals:
                    continue  # reached by the keys of an earlier query too
                self._put(ReferralCandidate.of_row(row), _keys_of_row(row))

    def _fetch_members(self, session: Session, program_id: int, plans: list[LookupPlan]) -> None:
        wanted: dict[str, set[str]] = {}
        for plan in plans:
            for column, values in _member_lookups(plan):
                wanted.setdefault(column, set()).update(values)
        if not wanted:
            return
        parts = [
            select(*_MEMBER_COLUMNS).where(
                Member.program_id == program_id, getattr(Member, column).in_(sorted(values))
            )
            for column, values in wanted.items()
        ]
        statement: Any = union_all(*parts) if len(parts) > 1 else parts[0]
        for row in session.execute(statement):
            if row[0] in self._members:
                continue
            member = MemberCandidate(*row)
            self._members[member.id] = member
            for column, index in self._member_index.items():
                value = getattr(member, column)
                if value is not None:
                    index.setdefault(value, set()).add(member.id)

    def _put(self, candidate: ReferralCandidate, keys: Sequence[Any]) -> None:
        """Index a referral by those of its keys (``_KEY_COLUMNS``, in order) the batch
        looks up."""
        for column, old in self._keys.pop(candidate.id, ()):
            self._index[column][old].discard(candidate.id)
        indexed: list[tuple[str, str]] = []
        for column, value in zip(_KEY_COLUMNS, keys, strict=True):
            if value is not None and value in self._wanted[column]:
                indexed.append((column, value))
                self._index[column].setdefault(value, set()).add(candidate.id)
        self._keys[candidate.id] = indexed
        self._referrals[candidate.id] = candidate

    def update(self, referral: Referral) -> None:
        """A referral of the program as it is now in the session (changed or just created)."""
        self._put(referral_candidate(referral), [getattr(referral, c) for c in _KEY_COLUMNS])

    def candidate(self, referral_id: int) -> ReferralCandidate | None:
        return self._referrals.get(referral_id)

    # ---- one entry's view

    def referrals(self, plan: LookupPlan) -> list[ReferralCandidate]:
        found: dict[int, None] = {}
        for name in _DIRECT_COLUMNS:
            index = self._index[name]
            for value in plan.direct_values(name):
                for rid in sorted(index.get(value, ())):
                    found.setdefault(rid)
        for name, attr in _FUZZY_COLUMNS:
            values = getattr(plan, attr)
            if not values:
                continue
            index = self._index[name]
            reached: set[int] = set()
            for value in values:
                reached |= index.get(value, set())
            for rid in sorted(reached)[: self.limit]:
                found.setdefault(rid)
        return [self._referrals[rid] for rid in found]

    def members(self, plan: LookupPlan) -> list[MemberCandidate]:
        found: dict[int, None] = {}
        for column, values in _member_lookups(plan):
            index = self._member_index[column]
            reached: set[int] = set()
            for value in values:
                reached |= index.get(value, set())
            for mid in sorted(reached):
                found.setdefault(mid)
        return [self._members[mid] for mid in found]
