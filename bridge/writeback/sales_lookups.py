"""The batched Salesforce lookups of sales and demos: one query per object per batch of events,
the queries of one step five to a composite call (`Writer.queries`, one API call).

Every query is built with `format_soql` and cut only where its URL-encoded text would grow past
`URL_BUDGET` (the query is a GET); a batch of 100 sales needs a few account queries, as each
phone is searched under its usual spellings. Phones are searched by
their usual spellings (`phone_variants`): `Account.Phone` is free text, and the cascade then
compares the candidates as numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote_plus

import phonenumbers
from simple_salesforce import format_soql

from bridge.writeback.client import Writer

URL_BUDGET = 7_000
"""Characters of a query's URL-encoded text: under the 8 KiB request line common HTTP servers
(and the local org) accept, and well under Salesforce's 16,384-character URI limit."""


def phone_variants(value: str | None, region: str) -> list[str]:
    """The spellings a phone is stored under: as given, E.164, national, international, and the
    national number as digits, with dashes, dots and spaces."""
    if not value or not value.strip():
        return []
    out = [value.strip()]
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return out
    fmt = phonenumbers.PhoneNumberFormat
    national = phonenumbers.format_number(parsed, fmt.NATIONAL)
    international = phonenumbers.format_number(parsed, fmt.INTERNATIONAL)
    local = international.split(" ", 1)[1] if " " in international else international
    digits = str(parsed.national_number)
    for v in (
        phonenumbers.format_number(parsed, fmt.E164),
        national,
        international,
        digits,
        local,
        local.replace("-", "."),
        local.replace("-", " "),
    ):
        if v not in out:
            out.append(v)
    return out


def _batches(groups: Sequence[list[str]], build: Callable[[list[str]], str]) -> Iterable[list[str]]:
    """The values of consecutive groups (one group per event), cut where the query's encoded
    text would pass URL_BUDGET."""
    batch: list[str] = []
    for group in groups:
        if batch and len(quote_plus(build(sorted(set(batch + group))))) > URL_BUDGET:
            yield batch
            batch = []
        batch = batch + group
    if batch:
        yield batch


def _soqls(groups: Sequence[list[str]], build: Callable[[list[str]], str]) -> list[str]:
    return [build(sorted(set(batch))) for batch in _batches([g for g in groups if g], build)]


def _unique(answers: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The records of several queries, each once (by Id)."""
    seen: dict[str, dict[str, Any]] = {}
    for records in answers:
        for record in records:
            seen[str(record["Id"])] = record
    return list(seen.values())


def _query_in(
    writer: Writer, groups: Sequence[list[str]], build: Callable[[list[str]], str]
) -> list[dict[str, Any]]:
    """The queries of a lookup cut by URL_BUDGET, five in one composite call (`queries`)."""
    return _unique(writer.queries(_soqls(groups, build)))


def any_in(template: str, *conditions: tuple[str, list[str]]) -> str:
    """`template` with `A IN (...) OR B IN (...)` for its WHERE, leaving out empty lists; the
    field names are ours, the values quoted by format_soql."""
    used = [(name, values) for name, values in conditions if values]
    where = " OR ".join(f"{name} IN {{}}" for name, _v in used)
    return format_soql(template.replace("{}", where), *(v for _n, v in used))


def accounts(
    writer: Writer, wanted: Sequence[tuple[str | None, str | None]], region: str
) -> list[dict[str, Any]]:
    """Accounts whose Phone or Name could be one of `wanted` (business name, phone) pairs."""
    groups = [[f"n:{name}" for name in [n] if name] + [f"p:{v}" for v in phone_variants(p, region)]
              for n, p in wanted]  # fmt: skip

    def build(values: list[str]) -> str:
        return any_in(
            "SELECT Id, Name, Phone, BillingCity FROM Account WHERE {} ORDER BY Id",
            ("Phone", [v[2:] for v in values if v.startswith("p:")]),
            ("Name", [v[2:] for v in values if v.startswith("n:")]),
        )

    return _query_in(writer, groups, build)


def contacts(writer: Writer, account_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The contacts of the Accounts (the cascade's candidates, per Account)."""
    return _query_in(
        writer,
        [[a] for a in account_ids],
        lambda ids: format_soql(
            "SELECT Id, AccountId, FirstName, LastName, Phone FROM Contact "
            "WHERE AccountId IN {} ORDER BY Id",
            ids,
        ),
    )


def open_opportunities(writer: Writer, account_ids: Sequence[str]) -> list[dict[str, Any]]:
    return _query_in(
        writer,
        [[a] for a in account_ids],
        lambda ids: format_soql(
            "SELECT Id, AccountId, Name, StageName FROM Opportunity "
            "WHERE AccountId IN {} AND IsClosed = false ORDER BY Id",
            ids,
        ),
    )


def contact_roles(writer: Writer, opportunity_ids: Sequence[str]) -> list[dict[str, Any]]:
    return _query_in(
        writer,
        [[o] for o in opportunity_ids],
        lambda ids: format_soql(
            "SELECT Id, OpportunityId, ContactId FROM OpportunityContactRole "
            "WHERE OpportunityId IN {}",
            ids,
        ),
    )


STANDARD_PRICE_BOOK = "SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1"


def products(
    writer: Writer, codes: Sequence[str], names: Sequence[str]
) -> tuple[list[dict[str, Any]], str | None]:
    """Product2 records with one of the codes (ProductCode) or names, and the standard price
    book's id (None: the org has none); the queries are independent, so they share a
    composite call."""
    groups = [[f"c:{c}"] for c in codes] + [[f"n:{n}"] for n in names]

    def build(values: list[str]) -> str:
        return any_in(
            "SELECT Id, ProductCode, Name, IsActive FROM Product2 WHERE {} ORDER BY Id",
            ("ProductCode", [v[2:] for v in values if v.startswith("c:")]),
            ("Name", [v[2:] for v in values if v.startswith("n:")]),
        )

    *found, book = writer.queries([*_soqls(groups, build), STANDARD_PRICE_BOOK])
    return _unique(found), str(book[0]["Id"]) if book else None


def price_entries(writer: Writer, book_id: str, product_ids: Sequence[str]) -> list[dict[str, Any]]:
    return _query_in(
        writer,
        [[p] for p in product_ids],
        lambda ids: format_soql(
            "SELECT Id, Product2Id, IsActive FROM PricebookEntry "
            "WHERE Pricebook2Id = {} AND Product2Id IN {}",
            book_id,
            ids,
        ),
    )
