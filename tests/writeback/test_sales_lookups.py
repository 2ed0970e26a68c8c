"""The sales lookups' pure parts: phone spellings, query batches cut by encoded length, and the
sync triggers of field mappings."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest
from pydantic import ValidationError

from bridge.config import FieldMapping
from bridge.writeback import sales_lookups
from bridge.writeback.mapping import plan_fields


def test_a_phone_is_searched_under_its_usual_spellings() -> None:
    variants = sales_lookups.phone_variants("+1 415 555 0100", "US")
    for spelling in (
        "(415) 555-0100",
        "+14155550100",
        "4155550100",
        "415-555-0100",
        "415.555.0100",
        "415 555 0100",
        "+1 415-555-0100",
    ):
        assert spelling in variants
    assert sales_lookups.phone_variants("020 7946 0958", "GB")[1] == "+442079460958"
    assert sales_lookups.phone_variants("not a phone", "US") == ["not a phone"]
    assert sales_lookups.phone_variants(None, "US") == []


class Recorder:
    def __init__(self) -> None:
        self.soqls: list[str] = []
        self.calls = 0

    def query(self, soql: str) -> list[dict[str, object]]:
        return self.queries([soql])[0]

    def queries(self, soqls: list[str]) -> list[list[dict[str, object]]]:
        self.calls += 1
        self.soqls += soqls
        return [[{"Id": "001A"}] for _ in soqls]  # the same record from every batch is kept once

    def collection(
        self, method: str, path: str, records: list[dict[str, object]]
    ) -> list[dict[str, object]]:
        raise AssertionError("lookups never write")


def test_one_query_per_batch_cut_by_its_encoded_length() -> None:
    small = Recorder()
    assert sales_lookups.accounts(small, [("Bluebird", "415 555 0100"), ("O'Hare", None)], "US")
    [soql] = small.soqls
    assert "'415 555 0100'" in soql and "'(415) 555-0100'" in soql
    assert "OR Name IN ('Bluebird','O\\'Hare')" in soql  # quoted by format_soql

    many = Recorder()
    wanted = [(f"Business {n}", f"(415) 555-{n:04d}") for n in range(100)]
    found = sales_lookups.accounts(many, wanted, "US")
    assert found == [{"Id": "001A"}]
    assert 2 <= len(many.soqls) <= 5
    assert many.calls == 1  # the lookup's queries in one composite call
    assert all(len(quote_plus(q)) <= sales_lookups.URL_BUDGET for q in many.soqls)
    joined = " ".join(many.soqls)
    assert all(f"'Business {n}'" in joined for n in range(100))


def test_a_mapping_is_sent_only_at_the_events_it_names() -> None:
    always = FieldMapping(local="plan", salesforce=["Plan__c"], sync="ours")
    at_sale = FieldMapping(local="sale.amount", salesforce=["Amount"], sync="ours", on=["sale"])
    at_demo = FieldMapping(local="title", salesforce=["Title"], sync="ours", on=["demo_set"])
    local = {"plan": "gold", "sale.amount": 10, "title": "CEO"}
    mappings = [always, at_sale, at_demo]
    assert plan_fields(local, None, mappings).writes == {"Plan__c": "gold"}
    assert plan_fields(local, None, mappings, "sale").writes == {"Plan__c": "gold", "Amount": 10}
    assert plan_fields(local, None, mappings, "demo_set").writes == {
        "Plan__c": "gold",
        "Title": "CEO",
    }
    with pytest.raises(ValidationError, match="sync: ours and on: \\[sale\\]"):
        FieldMapping(local="sale.amount", salesforce=["Amount"], sync="ours")
    with pytest.raises(ValidationError):
        FieldMapping(local="plan", salesforce=["Plan__c"], on=["renewal"])  # type: ignore[list-item]
