"""`sfbridge import sales`: sales already in Salesforce recorded on local referrals.

For one batch of rows:

1. locally: the row's referral by `referral_id` (its public id), `external_id` or `email`
   (one referral of the program with that email); a sales import creates no people — import
   them first with `sfbridge import leads`;
2. Salesforce, batched: the rows' `sf_account_id` / `sf_contact_id` / `sf_opportunity_id`
   are read back (a Contact or Opportunity of another Account than the row's fails it); rows
   without an Account id go through the sales pipeline's Account cascade (`writeback.cascade`,
   the candidates of the whole batch in a few queries), then the Contact cascade under that
   Account for the person (`first_name`/`last_name`/`contact_phone`, default the
   referral's);
3. the referral keeps the ids, and the sale is recorded (`writeback.events`, idempotent by
   `sale_id`) with its push marked skipped (`imported`): it is in the integration reports and
   can be repushed, and is not sent again. With `--push` the push stays pending and the
   outbound engine sends it (it then creates what the cascade did not find).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bridge.imports import csvfile
from bridge.imports.outcomes import (
    Pending,
    Result,
    Target,
    connect_ids,
    given_records,
    referrals_by,
    same_id,
)
from bridge.matchkeys import email_key
from bridge.store.models import Referral
from bridge.writeback import cascade, events, sales_lookups
from bridge.writeback.pushes import mark_skipped

IMPORTED = "imported"
FIELDS = {
    "Account": ["Id", "Name", "Phone", "BillingCity"],
    "Contact": ["Id", "AccountId", "FirstName", "LastName", "Phone"],
    "Opportunity": ["Id", "AccountId", "Name", "StageName"],
}
COLUMNS = {
    "Account": "sf_account_id",
    "Contact": "sf_contact_id",
    "Opportunity": "sf_opportunity_id",
}


def connect(session: Session, target: Target, batch: list[Pending]) -> list[Result]:
    """Connect a batch of checked rows (the caller commits; each row in its own savepoint)."""
    _referrals(session, target, batch)
    _given_ids(target, batch)
    _cascades(target, batch)
    results = []
    for p in batch:
        if p.result is None:
            try:
                with session.begin_nested():
                    p.result = _record(session, target, p)
            except events.EventConflict as exc:
                p.fail(f"sale_id {p.row.get('sale_id')}: {exc.message}")
            except Exception as exc:  # a database refusal fails this row only
                p.fail(f"could not be saved: {' '.join(str(exc).split())[:300]}")
        assert p.result is not None
        results.append(p.result)
    return results


def _referral_of(p: Pending) -> Referral:
    assert p.referral is not None  # a row without one has failed
    return p.referral


def _referrals(session: Session, target: Target, batch: list[Pending]) -> None:
    pid = target.program.id
    values = {c: [p.row.get(c) or "" for p in batch] for c in ("referral_id", "external_id")}
    by_public = referrals_by(session, pid, "public_id", values["referral_id"])
    by_external = referrals_by(session, pid, "external_id", values["external_id"])
    emails = [email_key(p.row.get("email")) or "" for p in batch]
    by_email = referrals_by(session, pid, "email_key", emails)
    for p in batch:
        row = p.row
        if row.get("referral_id"):
            found, named = by_public.get(str(row.get("referral_id")), []), "referral_id"
        elif row.get("external_id"):
            found, named = by_external.get(str(row.get("external_id")), []), "external_id"
        else:
            found, named = by_email.get(email_key(row.get("email")) or "", []), "email"
        if len(found) == 1:
            p.referral = found[0]
        elif found:
            ids = ", ".join(r.public_id for r in found[:5])
            p.fail(f"several referrals have the email {row.get('email')} ({ids}); give referral_id")
        else:
            p.fail(
                f"no referral with {named} {row.get(named)} in the program; import the people "
                "first (sfbridge import leads)"
            )


def _given_ids(target: Target, batch: list[Pending]) -> None:
    """The Account, Contact and Opportunity ids the rows give, read back from the org."""
    for sobject, column in COLUMNS.items():
        for p, record in given_records(target.writer, batch, sobject, column, FIELDS[sobject]):
            account = p.records.get("Account")
            if account and not same_id(record.get("AccountId"), account["Id"]):
                p.fail(
                    f"{sobject} {record['Id']} belongs to Account {record.get('AccountId')},"
                    f" not to {account['Id']} (sf_account_id)"
                )
                continue
            p.records[sobject] = record
    for p in batch:  # a Contact named without its Account: the Contact's Account
        contact = p.records.get("Contact")
        if p.result is None and contact and contact.get("AccountId") and "Account" not in p.records:
            p.records["Account"] = {"Id": contact["AccountId"]}


def _cascades(target: Target, batch: list[Pending]) -> None:
    """The Account cascade for the rows without one, then the Contact cascade under it."""
    region = target.org_config.writeback.sales.phone_region
    todo = [p for p in batch if p.result is None and "Account" not in p.records]
    wanted = [(p.row.get("business_name"), p.row.get("phone")) for p in todo]
    accounts = sales_lookups.accounts(target.writer, wanted, region) if todo else []
    for p in todo:
        outcome = cascade.account(
            business_name=p.row.get("business_name"),
            phone=p.row.get("phone"),
            city=p.row.get("city"),
            candidates=accounts,
            region=region,
        )
        if outcome.record_id:
            p.records["Account"] = {"Id": outcome.record_id}
        elif not target.push:  # with --push, the send creates it
            p.fail(f"no Account to connect: {outcome.reason}", "skipped")
    todo = [p for p in batch if p.result is None and "Account" in p.records]
    todo = [p for p in todo if "Contact" not in p.records]
    found = sales_lookups.contacts(
        target.writer, sorted({p.records["Account"]["Id"] for p in todo})
    )
    for p in todo:
        referral = _referral_of(p)
        account_id = p.records["Account"]["Id"]
        outcome = cascade.contact(
            last_name=p.row.get("last_name") or referral.last_name,
            phone=p.row.get("contact_phone") or referral.phone,
            candidates=[c for c in found if same_id(c.get("AccountId"), account_id)],
            region=region,
        )
        if outcome.record_id:
            p.records["Contact"] = {"Id": outcome.record_id}


def _record(session: Session, target: Target, p: Pending) -> Result:
    referral = _referral_of(p)
    ids: dict[str, str | None] = {
        COLUMNS[o]: str(p.records[o]["Id"]) for o in COLUMNS if o in p.records
    }
    refused = connect_ids(referral, ids)
    if refused:
        return Result(p.row, "failed", refused)
    at = csvfile.closed_at(str(p.row.get("closed_at")))
    assert at is not None  # checked with the row
    sale, push, created = events.record(
        session, "sale", target.conn, referral, sale_body(target, referral, p.row.values), at
    )
    if created and not target.push:
        mark_skipped(
            push,
            IMPORTED,
            "recorded by sfbridge import sales: the sale is in Salesforce already, so it was "
            "not sent (repush sends it)",
        )
    session.flush()
    connected = ", ".join(f"{o} {p.records[o]['Id']}" for o in COLUMNS if o in p.records)
    why = connected or "nothing in Salesforce yet: the push creates it"
    return Result(
        p.row,
        "connected" if created else "unchanged",
        f"sale {sale.client_id}: {why}",
        created=created,
        referral_id=referral.id,
        push_id=push.id if created and target.push else None,
    )


def sale_body(target: Target, referral: Referral, values: dict[str, str]) -> dict[str, Any]:
    """The sale as `POST /api/v1/sales` takes it (the same body is the same sale again)."""
    body: dict[str, Any] = {
        "org": target.conn.name,
        "id": values["sale_id"],
        "referral_id": referral.id,
        "business_name": values["business_name"],
        "closed_at": csvfile.closed_at(values["closed_at"]).isoformat(),  # type: ignore[union-attr]
    }
    for name in ("phone", "city", "state"):
        if values.get(name):
            body[name] = values[name]
    if values.get("amount"):
        body["amount"] = str(csvfile.decimal(values["amount"]))
    if values.get("quantity"):
        item = {k: values[k] for k in ("product_code", "product_name") if values.get(k)}
        item["quantity"] = str(csvfile.decimal(values["quantity"]))
        item["unit_price"] = str(csvfile.decimal(values["unit_price"]))
        body["items"] = [item]
    return body
