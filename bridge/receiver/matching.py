"""Referral target match and member match (SPEC §7.3-4). Pure: plain values in, values out.

The flow is split so that the database side only *narrows* and the core *decides*:

1. ``plan_lookups(entry, receiver)`` reads the entry's records and says what to look up:
   direct keys (Referral ID / External ID values, Salesforce ids), the people to match fuzzily
   (with their normalized keys), and member keys.
2. ``bridge.receiver.candidates`` fetches the few referrals and members those keys reach
   through indexes.
3. ``match_direct`` / ``match_fuzzy`` / ``match_member`` here compare the candidates with the
   entry and score them; they give the same answer whatever extra candidates they are given.

Records: ``entry.records`` maps ``Lead``/``Contact``/``Account``/``Opportunity`` to a record (a
dict with Salesforce field names) or None, built by the relational rules (SPEC §6). When the
receiver's ``contact_matching`` is ``trigger_and_account_contacts`` the inbound side also
supplies ``"AccountContacts": [{...}, ...]`` — every Contact of the trigger record's Account
(same fields as ``Contact``); they are tried for direct and fuzzy matching after the trigger's
own person.

Longer than most modules on purpose: the lookup plan and the three matchers read the same
person keys and scores; kept together they are one pure unit with one table of tests.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from rapidfuzz import fuzz

from bridge import matchkeys as mk
from bridge.config import Receiver, parse_field_ref
from bridge.vocabulary import ACCOUNT, CONTACT, LEAD, OPPORTUNITY

ACCOUNT_CONTACTS = "AccountContacts"

# Salesforce id field of each object -> the Referral column that remembers it.
SF_ID_COLUMNS = {
    "Lead": "sf_lead_id",
    "Contact": "sf_contact_id",
    "Opportunity": "sf_opportunity_id",
    "Account": "sf_account_id",
}

# Candidates within this much of the best name score are tied and go to the tie-breakers.
TIE_MARGIN = 0.02
# A company this similar (0-1) counts as the same company for the tie-break.
COMPANY_SAME = 0.9


@dataclass(frozen=True)
class EntryInput:
    """What the core needs to know about a sales entry."""

    sobject: str
    record_id: str | None
    change_type: str  # created | updated | deleted | undeleted
    records: Mapping[str, Any]
    previous: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trigger(self) -> Mapping[str, Any] | None:
        rec = self.records.get(self.sobject)
        return rec if isinstance(rec, Mapping) else None


@dataclass(frozen=True)
class ReferralCandidate:
    """A referral as the matcher sees it (built from a row; never an ORM object)."""

    id: int
    public_id: str
    status: str = "pending"
    ever_qualified: bool = False
    external_id: str | None = None
    member_id: int | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    company: str | None = None
    phone: str | None = None
    email_key: str | None = None
    name_key: str | None = None
    company_key: str | None = None
    phone_key: str | None = None
    sf_lead_id: str | None = None
    sf_contact_id: str | None = None
    sf_account_id: str | None = None
    sf_opportunity_id: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> ReferralCandidate:
        """A candidate from a row of its fields in order (more columns after them are left
        out; NULL ``fields`` is ``{}``). Fills the instance's dict directly: a frozen
        dataclass's ``__init__`` sets each of the 20 fields through ``object.__setattr__``,
        and a chunk's pool builds thousands of candidates at a million referrals."""
        candidate = object.__new__(cls)
        values = candidate.__dict__
        values.update(zip(_CANDIDATE_FIELDS, row, strict=False))  # a short row: KeyError below
        if values["fields"] is None:
            values["fields"] = {}
        return candidate

    @classmethod
    def build(cls, id: int, public_id: str, **values: Any) -> ReferralCandidate:
        """A candidate with its ``*_key`` values computed (for tests and callers without rows)."""
        keys = mk.referral_keys(
            first_name=values.get("first_name"),
            last_name=values.get("last_name"),
            email=values.get("email"),
            company=values.get("company"),
            phone=values.get("phone"),
        )
        keys.pop("name_block")
        keys.pop("name_rblock")
        keys.pop("name_ablock")
        keys.pop("name_pblock")
        return cls(id=id, public_id=public_id, **{**keys, **values})


_CANDIDATE_FIELDS = tuple(f.name for f in fields(ReferralCandidate))


@dataclass(frozen=True)
class MemberCandidate:
    id: int
    name: str = ""
    email: str | None = None
    email_key: str | None = None
    referral_code: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class DirectKey:
    """A value that identifies a referral exactly; ``priority`` orders the keys (lower first)."""

    source: str  # where the value came from, e.g. "Lead.Referral_ID__c" or "Contact.Id"
    column: str  # public_id | external_id | sf_lead_id | ...
    value: str
    priority: int


@dataclass(frozen=True)
class Person:
    """A Salesforce person (Lead or Contact) to match fuzzily, with normalized keys."""

    source: str  # "Lead", "Contact", "AccountContacts[2]"
    sobject: str
    id: str | None
    first_name: str | None
    last_name: str | None
    name: str
    email: str | None
    company: str | None
    phone: str | None
    email_key: str | None
    name_key: str | None
    name_blocks: tuple[str, ...]
    name_rblocks: tuple[str, ...]
    name_ablocks: tuple[str, ...]
    name_pblocks: tuple[str, ...]
    company_key: str | None
    phone_key: str | None
    # The name keys with the first name replaced by each of its nicknames (Bob -> Robert).
    name_key_variants: tuple[str, ...] = ()

    @property
    def identifiable(self) -> bool:
        return bool(self.email_key or self.name_key)


@dataclass(frozen=True)
class MemberKey:
    kind: str  # referral_code | member_email | member_external_id
    source: str
    value: str


@dataclass(frozen=True)
class LookupPlan:
    """The keys to look up. Immutable, so each list of keys is made once, when first asked
    for (a batch asks each plan for them several times: the pool's query, its cover check
    and each entry's own view of the pool)."""

    direct: tuple[DirectKey, ...]
    people: tuple[Person, ...]
    member_keys: tuple[MemberKey, ...]

    @property
    def direct_referral_ids(self) -> tuple[DirectKey, ...]:
        """Referral ID / External ID values (Salesforce ids say nothing about a referral)."""
        return tuple(k for k in self.direct if k.column in ("public_id", "external_id"))

    def direct_values(self, column: str) -> tuple[str, ...]:
        return self._direct_by_column.get(column, ())

    @functools.cached_property
    def _direct_by_column(self) -> dict[str, tuple[str, ...]]:
        columns: dict[str, set[str]] = {}
        for k in self.direct:
            columns.setdefault(k.column, set()).add(k.value)
        return {column: tuple(sorted(values)) for column, values in columns.items()}

    @functools.cached_property
    def email_keys(self) -> tuple[str, ...]:
        return _keys_of(self.people, "email_key")

    @functools.cached_property
    def name_keys(self) -> tuple[str, ...]:
        return _keys_of(self.people, "name_key")

    @functools.cached_property
    def name_blocks(self) -> tuple[str, ...]:
        return _blocks_of(self.people, "name_blocks")

    @functools.cached_property
    def name_rblocks(self) -> tuple[str, ...]:
        return _blocks_of(self.people, "name_rblocks")

    @functools.cached_property
    def name_ablocks(self) -> tuple[str, ...]:
        return _blocks_of(self.people, "name_ablocks")

    @functools.cached_property
    def name_pblocks(self) -> tuple[str, ...]:
        return _blocks_of(self.people, "name_pblocks")

    @functools.cached_property
    def phone_keys(self) -> tuple[str, ...]:
        return _keys_of(self.people, "phone_key")

    def member_values(self, kind: str) -> list[str]:
        return sorted({k.value for k in self.member_keys if k.kind == kind})


def _keys_of(people: Sequence[Person], key: str) -> tuple[str, ...]:
    """The people's distinct values of one key, sorted (a lookup's IN list)."""
    return tuple(sorted({v for p in people if (v := getattr(p, key))}))


def _blocks_of(people: Sequence[Person], blocks: str) -> tuple[str, ...]:
    """The people's distinct blocks of one kind, sorted."""
    return tuple(sorted({b for p in people for b in getattr(p, blocks)}))


# ---- reading the records ---------------------------------------------------------------------


def _record(records: Mapping[str, Any], obj: str) -> Mapping[str, Any] | None:
    rec = records.get(obj)
    return rec if isinstance(rec, Mapping) else None


def account_contacts(records: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = records.get(ACCOUNT_CONTACTS)
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        return []
    return [c for c in items if isinstance(c, Mapping)]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _blocks(first: Any, last: Any, name: Any) -> tuple[tuple[str, ...], ...]:
    """The four kinds of name blocks of a person (cached: a batch repeats names, and the
    worker plans each entry's lookups twice, for the pool and for the decision)."""
    try:
        return _cached_blocks(first, last, name)
    except TypeError:  # a value that cannot be a cache key (a malformed record)
        return _cached_blocks.__wrapped__(first, last, name)


@functools.lru_cache(maxsize=8192)
def _cached_blocks(first: Any, last: Any, name: Any) -> tuple[tuple[str, ...], ...]:
    # The person's blocks, and those of the same surname with each nickname of the first
    # name, so that "Bob Smith" reaches "Robert Smith".
    kinds: list[dict[str, None]] = [{} for _kind in mk.BLOCK_KINDS]
    for f in [first, *mk.first_name_variants(first)]:
        for keys, blocks in zip(kinds, mk.all_name_blocks(f, last, name), strict=True):
            keys.update(dict.fromkeys(blocks))
    return tuple(tuple(keys) for keys in kinds)


def _person(source: str, sobject: str, rec: Mapping[str, Any], company: Any) -> Person:
    first, last, name = rec.get("FirstName"), rec.get("LastName"), rec.get("Name")
    blocks, rblocks, ablocks, pblocks = _blocks(first, last, name)
    phone = rec.get("Phone") or rec.get("MobilePhone")
    return Person(
        source=source,
        sobject=sobject,
        id=_text(rec.get("Id")),
        first_name=_text(first),
        last_name=_text(last),
        name=mk.full_name(first, last, name),
        email=_text(rec.get("Email")),
        company=_text(company),
        phone=_text(phone),
        email_key=mk.email_key(rec.get("Email")),
        name_key=mk.name_key(first, last, name),
        name_blocks=blocks,
        name_rblocks=rblocks,
        name_ablocks=ablocks,
        name_pblocks=pblocks,
        company_key=mk.company_key(company),
        phone_key=mk.phone_key(phone),
        name_key_variants=tuple(
            k for v in mk.first_name_variants(first) if (k := mk.name_key(v, last)) is not None
        ),
    )


def people(entry: EntryInput, receiver: Receiver) -> list[Person]:
    """The people to match, best first.

    The trigger's person is the trigger record itself when it is a Lead or Contact; for an
    Account or Opportunity it is the related Contact (present only when the relational rules
    found exactly one), else the converted Lead. ``trigger_and_account_contacts`` adds every
    Contact of the Account after it.
    """
    records = entry.records
    account = _record(records, "Account")
    account_name = account.get("Name") if account else None
    out: list[Person] = []
    order = [entry.sobject] if entry.sobject in ("Lead", "Contact") else ["Contact", "Lead"]
    for obj in order:
        rec = _record(records, obj)
        if rec is not None:
            company = rec.get("Company") if obj == "Lead" else account_name
            out.append(_person(obj, obj, rec, company))
            break
    if receiver.contact_matching == "trigger_and_account_contacts":
        seen = {p.id for p in out if p.id}
        for i, rec in enumerate(account_contacts(records)):
            if rec.get("Id") and rec.get("Id") in seen:
                continue
            out.append(_person(f"{ACCOUNT_CONTACTS}[{i}]", "Contact", rec, account_name))
    return out


def plan_lookups(entry: EntryInput, receiver: Receiver) -> LookupPlan:
    """Every key the database side should look up for this entry."""
    records = entry.records
    direct: list[DirectKey] = []
    # 1. The configured Referral ID / External ID fields, in config order.
    for prio, ref in enumerate(receiver.target_match.direct_fields):
        obj, name = parse_field_ref(ref)
        rec = _record(records, obj)
        value = _text(rec.get(name)) if rec else None
        if value:
            direct.append(DirectKey(ref, "public_id", value, prio))
            direct.append(DirectKey(ref, "external_id", value, prio))
    base = len(receiver.target_match.direct_fields)
    # 2. Salesforce ids a referral already carries: the trigger record first, then its related
    #    Lead/Contact/Opportunity, last the Account (one account can hold several referrals).
    sf_order = [entry.sobject] + [
        o for o in (LEAD, CONTACT, OPPORTUNITY, ACCOUNT) if o != entry.sobject
    ]
    for i, obj in enumerate(sf_order):
        rec = _record(records, obj)
        value = _text(rec.get("Id")) if rec else None
        if value:
            prio = base + (len(sf_order) + 1 if obj == "Account" else i)
            direct.append(DirectKey(f"{obj}.Id", SF_ID_COLUMNS[obj], value, prio))
    # 3. Account contacts, when configured: their Referral ID fields and ids.
    if receiver.contact_matching == "trigger_and_account_contacts":
        prio = base + len(sf_order)
        contact_refs = [
            parse_field_ref(r)[1]
            for r in receiver.target_match.direct_fields
            if parse_field_ref(r)[0] == "Contact"
        ]
        for i, rec in enumerate(account_contacts(records)):
            src = f"{ACCOUNT_CONTACTS}[{i}]"
            for name in contact_refs:
                value = _text(rec.get(name))
                if value:
                    direct.append(DirectKey(f"{src}.{name}", "public_id", value, prio))
                    direct.append(DirectKey(f"{src}.{name}", "external_id", value, prio))
            cid = _text(rec.get("Id"))
            if cid:
                direct.append(DirectKey(f"{src}.Id", "sf_contact_id", cid, prio))
    members: list[MemberKey] = []
    mm = receiver.member_match
    for kind, refs in (
        ("referral_code", mm.referral_code),
        ("member_email", mm.member_email),
        ("member_external_id", mm.member_external_id),
    ):
        for ref in refs:
            obj, name = parse_field_ref(ref)
            rec = _record(records, obj)
            value = _text(rec.get(name)) if rec else None
            if value:
                members.append(MemberKey(kind, ref, value))
    fuzzy_people = people(entry, receiver) if receiver.target_match.fuzzy else []
    return LookupPlan(tuple(direct), tuple(fuzzy_people), tuple(members))


# ---- scoring ---------------------------------------------------------------------------------


@dataclass
class Scored:
    """A candidate with how it was reached and its scores (what a reviewer sees)."""

    referral_id: int
    public_id: str
    name: str
    email: str | None
    company: str | None
    status: str
    via: str  # direct | email | name
    source: str  # the entry's field or person that matched
    score: float
    name_score: float | None = None
    company_score: float | None = None
    phone_match: bool | None = None
    tiebreak: int = 0

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain value: no need for dataclasses.asdict's deep copies.
        return {name: getattr(self, name) for name in _SCORED_FIELDS}


_SCORED_FIELDS = tuple(f.name for f in fields(Scored))


def _display_name(c: ReferralCandidate) -> str:
    return mk.full_name(c.first_name, c.last_name)


def _scored(c: ReferralCandidate, via: str, source: str, score: float, **kw: Any) -> Scored:
    return Scored(
        referral_id=c.id,
        public_id=c.public_id,
        name=_display_name(c),
        email=c.email,
        company=c.company,
        status=c.status,
        via=via,
        source=source,
        score=round(score, 4),
        **kw,
    )


@dataclass
class MatchResult:
    """The chosen referral (if any), everything considered, and why."""

    referral: ReferralCandidate | None
    via: str | None  # direct | fuzzy
    candidates: list[Scored]
    ambiguous: bool = False
    source: str | None = None


def match_direct(plan: LookupPlan, candidates: Sequence[ReferralCandidate]) -> MatchResult:
    """The referral named by the highest-priority direct key that names any.

    Several different referrals at that priority (e.g. two referrals carrying one Account id)
    is ambiguous: nobody can say which one the change is about.
    """
    hits: list[tuple[int, DirectKey, ReferralCandidate]] = []
    for key in plan.direct:
        for c in candidates:
            if getattr(c, key.column) == key.value:
                hits.append((key.priority, key, c))
    if not hits:
        return MatchResult(None, None, [])
    hits.sort(key=lambda h: (h[0], h[2].id))
    scored: list[Scored] = []
    seen: set[int] = set()
    for _prio, key, c in hits:
        if c.id not in seen:
            seen.add(c.id)
            scored.append(_scored(c, "direct", f"{key.source} = {key.column}", 1.0))
    best_prio = hits[0][0]
    top = {h[2].id for h in hits if h[0] == best_prio}
    if len(top) > 1:
        return MatchResult(None, "direct", scored, ambiguous=True)
    return MatchResult(hits[0][2], "direct", scored, source=hits[0][1].source)


def _tiebreak(person: Person, c: ReferralCandidate) -> tuple[float | None, bool | None, int]:
    company = None
    if person.company_key and c.company_key:
        company = fuzz.token_set_ratio(person.company_key, c.company_key) / 100
    phone = None
    if person.phone_key and c.phone_key:
        phone = person.phone_key == c.phone_key
    points = 0
    if company is not None:
        points += 1 if company >= COMPANY_SAME else -1
    if phone is not None:
        points += 1 if phone else -1
    return company, phone, points


def _best_per_referral(scored: list[Scored]) -> list[Scored]:
    best: dict[int, Scored] = {}
    for s in scored:
        cur = best.get(s.referral_id)
        if cur is None or (s.score, s.tiebreak) > (cur.score, cur.tiebreak):
            best[s.referral_id] = s
    return sorted(best.values(), key=lambda s: (-s.score, -s.tiebreak, s.referral_id))


def _pick(ranked: list[Scored], by_name: bool = False) -> tuple[Scored | None, bool]:
    """The winner: the best score (or, among equal emails, the best name score); candidates
    within TIE_MARGIN of it are tied and settled by company/phone points."""

    def score(s: Scored) -> float:
        return (s.name_score or 0.0) if by_name else s.score

    if not ranked:
        return None, False
    ranked = sorted(ranked, key=lambda s: (-score(s), -s.tiebreak, s.referral_id))
    best = score(ranked[0])
    tied = [s for s in ranked if best - score(s) <= TIE_MARGIN]
    if len(tied) == 1:
        return tied[0], False
    tied.sort(key=lambda s: (-s.tiebreak, -score(s), s.referral_id))
    if tied[0].tiebreak > tied[1].tiebreak:
        return tied[0], False
    return None, True


def match_fuzzy(
    plan: LookupPlan, candidates: Sequence[ReferralCandidate], threshold: float
) -> MatchResult:
    """Normalized email first; then name similarity at or above `threshold`.

    Email: equal normalized emails score 1.0. Several referrals with that email (duplicates)
    are told apart by name score, then company/phone. Name: rapidfuzz ratio of the token-sorted
    folded names (0-1); candidates within TIE_MARGIN of the best are tied and settled by
    company (same company +1, different -1) and phone (same +1, different -1); still tied is
    ambiguous and goes to a reviewer.
    """
    by_email: list[Scored] = []
    by_name: list[Scored] = []
    for person in plan.people:
        for c in candidates:
            company, phone, points = _tiebreak(person, c)
            name_score = None
            if person.name_key and c.name_key:
                name_score = max(
                    fuzz.ratio(key, c.name_key) / 100
                    for key in (person.name_key, *person.name_key_variants)
                )
            if person.email_key and person.email_key == c.email_key:
                by_email.append(
                    _scored(
                        c,
                        "email",
                        person.source,
                        1.0,
                        name_score=name_score,
                        company_score=company,
                        phone_match=phone,
                        tiebreak=points,
                    )
                )
            elif name_score is not None:
                by_name.append(
                    _scored(
                        c,
                        "name",
                        person.source,
                        name_score,
                        name_score=name_score,
                        company_score=company,
                        phone_match=phone,
                        tiebreak=points,
                    )
                )
    emails = _best_per_referral(by_email)
    email_ids = {s.referral_id for s in emails}
    names = [s for s in _best_per_referral(by_name) if s.referral_id not in email_ids]
    listed = emails + names
    if emails:
        winner, ambiguous = _pick(emails, by_name=True)
    else:
        winner, ambiguous = _pick([s for s in names if s.score >= threshold])
    if winner is None:
        return MatchResult(None, "fuzzy" if ambiguous else None, listed, ambiguous=ambiguous)
    chosen = next(c for c in candidates if c.id == winner.referral_id)
    return MatchResult(chosen, "fuzzy", listed, source=f"{winner.source} ({winner.via})")


@dataclass
class MemberMatch:
    member: MemberCandidate | None
    kind: str | None
    source: str | None
    others: list[dict[str, Any]]


def match_member(plan: LookupPlan, members: Sequence[MemberCandidate]) -> MemberMatch:
    """The referring member named by the entry: referral code, then member email, then
    member external id (each in config order). Later keys naming another member are listed."""
    found: list[tuple[MemberKey, MemberCandidate]] = []
    for key in plan.member_keys:
        for m in members:
            if key.kind == "referral_code":
                hit = mk.code_key(m.referral_code) == mk.code_key(key.value)
            elif key.kind == "member_email":
                hit = m.email_key is not None and m.email_key == mk.email_key(key.value)
            else:
                hit = m.external_id == key.value
            if hit:
                found.append((key, m))
    if not found:
        return MemberMatch(None, None, None, [])
    key, member = found[0]
    others = [
        {"member_id": m.id, "kind": k.kind, "source": k.source}
        for k, m in found[1:]
        if m.id != member.id
    ]
    return MemberMatch(member, key.kind, key.source, others)
