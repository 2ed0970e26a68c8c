"""`sfbridge import leads`: Salesforce Leads and Contacts connected to local referrals.

For one batch of rows:

1. Salesforce, batched: the rows' `sf_lead_id` / `sf_contact_id` are read back (`Id IN`, the
   queries sent together in composite requests), so an id that is not in the org fails its
   row; rows without ids look their person up by email the way referral add does
   (`writeback.referrals.find_existing`: unconverted Leads and Contacts, the record carrying
   the referral's id first, then the object referral add creates, then the oldest);
2. locally, per row: the referral named by `referral_id` (its public id) or `external_id`,
   else the receiver's own matching of that Salesforce record (`receiver.matching`: the
   referral carrying its id, then email, then name within the fuzzy threshold, told apart by
   company and phone; referrals connected to another record of the object are left out of
   the fuzzy match), else a new referral of the program from the row's values;
3. the referral keeps the record's id (`sf_lead_id` / `sf_contact_id`, and the Contact's
   `sf_account_id`); blank local values are filled from the row, none is overwritten.

Nothing is sent to Salesforce: the people are there already.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bridge.config import referral_add_for
from bridge.imports.outcomes import (
    Pending,
    Result,
    State,
    Target,
    connect_ids,
    given_records,
    referrals_by,
    same_id,
)
from bridge.receiver import candidates, matching
from bridge.receiver.service import new_public_id
from bridge.store.models import Referral
from bridge.writeback.mapping import salesforce_email
from bridge.writeback.referrals import find_existing, lookup_fields, pick_existing

ID_FIELDS = {"Lead": "sf_lead_id", "Contact": "sf_contact_id"}
FILLED = ("first_name", "last_name", "email", "phone", "company")


class RowFailed(Exception):
    """The row cannot be connected; raised before the row changed anything."""


def connect(session: Session, target: Target, pending: list[Pending]) -> list[Result]:
    """Connect a batch of checked rows (the caller commits).

    The rows are saved in one savepoint; when the database refuses one of them, that is
    rolled back and the batch saved again with a savepoint per row, so the refused row fails
    alone (a savepoint per row on the normal path would double the round trips)."""
    _salesforce_records(target, pending)
    looked_up = [p.result for p in pending]
    try:
        with session.begin_nested():
            return _save(session, target, pending, each_row=False)
    except Exception:  # a row the database refused: again, row by row, to tell which
        for p, result in zip(pending, looked_up, strict=True):
            p.result = result
        return _save(session, target, pending, each_row=True)


def _save(session: Session, target: Target, pending: list[Pending], each_row: bool) -> list[Result]:
    pid = target.program.id
    by_public = referrals_by(session, pid, "public_id", _values(pending, "referral_id"))
    by_external = referrals_by(session, pid, "external_id", _values(pending, "external_id"))
    receiver = target.org_config.receiver
    plans = {
        id(p): matching.plan_lookups(
            matching.EntryInput(sobject, str(record["Id"]), "updated", {sobject: record}), receiver
        )
        for p in pending
        if p.result is None
        for sobject, record in p.records.items()
    }
    # The referrals every row's record can reach, in a few queries for the whole batch.
    pool = candidates.CandidatePool.fetch(session, pid, plans.values())
    results = []
    for p in pending:
        if p.result is None:
            args = (session, target, p, plans[id(p)], pool, by_public, by_external)
            try:
                if each_row:
                    with session.begin_nested():
                        p.result = _connect_row(*args)
                else:
                    p.result = _connect_row(*args)
            except RowFailed as exc:
                p.fail(str(exc))
            except Exception as exc:
                if not each_row:
                    raise
                p.fail(f"could not be saved: {' '.join(str(exc).split())[:300]}")
        assert p.result is not None
        results.append(p.result)
    return results


def _values(pending: list[Pending], column: str) -> list[str]:
    return [str(p.row.get(column)) for p in pending if p.row.get(column)]


def _salesforce_records(target: Target, pending: list[Pending]) -> None:
    """Each row's Lead or Contact, or its failure or skip (two kinds of batched query)."""
    cfg = target.org_config
    for sobject, column in ID_FIELDS.items():
        fields = lookup_fields(sobject, cfg)
        for p, given in given_records(target.writer, pending, sobject, column, fields):
            p.records[sobject] = {**given, "_type": sobject}
    by_email = [p for p in pending if p.result is None and not p.records]
    emails = [str(p.row.get("email")) for p in by_email if p.row.get("email")]
    found_by_email = find_existing(target.writer, cfg, emails) if emails else {}
    create_as = referral_add_for(cfg, target.program.key).create_as
    for p in by_email:
        key = salesforce_email(p.row.get("email"))
        record = pick_existing(
            p.row.get("referral_id"), found_by_email.get(key or "", []), create_as
        )
        if record is None:
            p.fail(
                f"no Lead or Contact in Salesforce has the email {p.row.get('email')}", "skipped"
            )
        else:
            p.records[str(record["_type"])] = record


def _connect_row(
    session: Session,
    target: Target,
    p: Pending,
    plan: matching.LookupPlan,
    pool: candidates.CandidatePool,
    by_public: dict[str, list[Referral]],
    by_external: dict[str, list[Referral]],
) -> Result:
    [(sobject, record)] = p.records.items()
    row, column, sf_id = p.row, ID_FIELDS[sobject], str(record["Id"])
    reached = pool.referrals(plan)
    referral: Referral | None = None
    if row.get("referral_id"):
        named = by_public.get(str(row.get("referral_id")))
        if not named:
            raise RowFailed(f"no referral {row.get('referral_id')} in the program")
        referral = named[0]
    elif row.get("external_id"):
        referral = next(iter(by_external.get(str(row.get("external_id")), [])), None)
    else:
        referral = _match(session, target, sobject, plan, reached)
    other = next((c for c in reached if same_id(getattr(c, column), sf_id)), None)
    if other is not None and (referral is None or other.id != referral.id):
        raise RowFailed(f"{sobject} {sf_id} is connected to referral {other.public_id} already")
    created = referral is None
    if referral is None:
        referral = Referral(
            public_id=new_public_id(),
            program_id=target.program.id,
            external_id=row.get("external_id"),
            status="pending",
        )
        session.add(referral)
    before = getattr(referral, column)
    ids: dict[str, str | None] = {column: sf_id}
    if sobject == "Contact":
        ids["sf_account_id"] = record.get("AccountId")
    refused = connect_ids(referral, ids)
    if refused:
        raise RowFailed(refused)
    _fill_blanks(referral, row.values, record)
    session.flush()
    pool.update(referral)  # the batch's later rows see it as it is now
    if row.get("external_id"):
        by_external[str(row.get("external_id"))] = [referral]
    state: State = "unchanged" if same_id(before, sf_id) else "connected"
    why = f"{sobject} {sf_id}" + (" (new referral)" if created else "")
    return Result(row, state, why, created=created, referral_id=referral.id)


def _match(
    session: Session,
    target: Target,
    sobject: str,
    plan: matching.LookupPlan,
    reached: list[matching.ReferralCandidate],
) -> Referral | None:
    """The referral the receiver would match the record to (None: nobody; RowFailed: several
    tie)."""
    receiver = target.org_config.receiver
    result = matching.match_direct(plan, reached)
    if result.referral is None and not result.ambiguous and receiver.target_match.fuzzy:
        # A referral connected to another record of the object is someone else.
        free = [c for c in reached if not getattr(c, ID_FIELDS[sobject])]
        result = matching.match_fuzzy(plan, free, receiver.target_match.fuzzy_threshold)
    if result.ambiguous:
        ids = ", ".join(str(s.public_id) for s in result.candidates[:5])
        raise RowFailed(f"several local referrals match ({ids}); name one in referral_id")
    return session.get(Referral, result.referral.id) if result.referral else None


def _fill_blanks(referral: Referral, values: dict[str, str], record: dict[str, Any]) -> None:
    from_record = {
        "first_name": record.get("FirstName"),
        "last_name": record.get("LastName"),
        "email": record.get("Email"),
        "phone": record.get("Phone"),
        "company": record.get("Company"),
    }
    for name in FILLED:
        value = values.get(name) or from_record[name]
        if value and not getattr(referral, name):
            setattr(referral, name, value)
