"""The sales path's writes go through the drain's packing (`writes.send`): the collections of
one step, whatever their objects, five to a composite call; each record's result lands on
every push that shares it."""

from __future__ import annotations

import itertools
from typing import Any

from bridge.salesforce.errors import make_error
from bridge.writeback import sales
from bridge.writeback.client import CollectionRequest
from bridge.writeback.planning import Item
from bridge.writeback.sales_records import Event, Records, SharedWrite, write_all


class Recorder:
    """Answers each record with an id; records of `failing` objects are refused one by one,
    requests naming `refused` fail as a whole."""

    def __init__(self, failing: str | None = None, refused: str | None = None) -> None:
        self.calls: list[list[CollectionRequest]] = []
        self.soqls: list[str] = []
        self.failing, self.refused = failing, refused
        self.ids = itertools.count(1)

    def collections(self, requests: list[CollectionRequest]) -> list[Any]:
        assert 1 <= len(requests) <= 5
        self.calls.append(requests)
        out: list[Any] = []
        for _method, path, records in requests:
            assert len(records) <= 200
            if self.refused and self.refused in path:
                out.append(make_error("INVALID_FIELD", "No such column", status=400))
                continue
            out.append(
                [
                    {"success": False, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_"
                     "EXCEPTION", "message": "locked", "fields": []}]}
                    if r["attributes"]["type"] == self.failing
                    else {"id": f"{r['attributes']['type']}-{next(self.ids)}", "success": True}
                    for r in records
                ]
            )  # fmt: skip
        return out

    def queries(self, soqls: list[str]) -> list[list[dict[str, Any]]]:
        self.soqls += soqls
        return [[] for _ in soqls]


def event(n: int, **result: Any) -> Event:
    item = Item(n, "sale", "Opportunity", {}, None, None)
    return Event(item, "sale", {}, n, {}, dict(result))


def test_independent_objects_share_one_call_and_every_push_of_a_record_gets_its_result() -> None:
    a, b, c = event(1), event(2), event(3)
    account = SharedWrite([a, b], {"Name": "Bluebird Bakery"})
    updated = SharedWrite([c], {"Name": "Wren & Co"}, record_id="001X")
    items = [SharedWrite([c], {"Quantity": 1.0}) for _ in range(450)]
    writer = Recorder(failing="Contact")
    contact = SharedWrite([a], {"LastName": "Baker"})
    write_all(
        writer,
        [
            Records("Account", [account, updated], {"Source__c": "bridge"}),
            Records("Contact", [contact]),
            Records("OpportunityLineItem", items),
        ],
    )
    # Account create, Account update, Contact, and 450 line items in three collections of
    # ≤ 200: six requests, five in the first call.
    assert [len(call) for call in writer.calls] == [5, 1]
    first = writer.calls[0]
    assert first[0] == (
        "POST",
        "composite/sobjects",
        [{"attributes": {"type": "Account"}, "Source__c": "bridge", "Name": "Bluebird Bakery"}],
    )
    assert first[1][0] == "PATCH" and first[1][2][0]["Id"] == "001X"
    assert account.ok and account.created and account.saved_id
    assert updated.ok and not updated.created and updated.saved_id
    assert all(w.ok for w in items)
    assert not contact.ok
    assert a.failed is not None and a.failed.sobject == "Contact"
    assert a.failed.error is not None and a.failed.error.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert b.failed is None and c.failed is None


def test_a_refused_request_fails_only_the_pushes_of_its_records() -> None:
    a, b = event(1), event(2)
    site = SharedWrite([a, b], {"Site_Key__c": "001X:pier 39"})
    account = SharedWrite([b], {"Name": "Bluebird Bakery"})
    writer = Recorder(refused="SFBridge_Site__c")
    write_all(
        writer,
        [
            Records("SFBridge_Site__c", [site], upsert_by="Site_Key__c"),
            Records("Account", [account]),
        ],
    )
    [call] = writer.calls
    assert call[0][1] == "composite/sobjects/SFBridge_Site__c/Site_Key__c"
    assert account.ok and not site.ok
    assert a.failed is not None and b.failed is not None
    assert a.failed.sobject == "SFBridge_Site__c" and a.failed.error is not None
    assert a.failed.error.code == "INVALID_FIELD"


def test_roles_and_line_items_in_one_call_and_saved_roles_are_not_made_again() -> None:
    sale = event(
        1,
        opportunity={"action": "create", "record_id": "006A", "written": True},
        people=[{"record_id": "003A"}, {"record_id": "003B"}],
        products=[{"product_id": "01tA", "price_entry_id": "01uA"}] * 3,
    )
    sale.body = {"items": [{"quantity": "1", "unit_price": "10"}] * 3}
    writer = Recorder(failing="OpportunityLineItem")
    sales._roles_and_items(writer, None, [sale])  # type: ignore[arg-type]
    [call] = writer.calls
    assert [(path, len(records)) for _m, path, records in call] == [
        ("composite/sobjects", 2),
        ("composite/sobjects", 3),
    ]
    assert [r["attributes"]["type"] for _m, _p, records in call for r in records[:1]] == [
        "OpportunityContactRole",
        "OpportunityLineItem",
    ]
    assert sale.failed is not None and sale.failed.sobject == "OpportunityLineItem"
    assert sale.result["opportunity"]["roles"] is True  # the roles are on: a resend keeps them
    assert sale.result["line_items"] == [None, None, None]

    sale.failed = None  # the resend writes only the line items
    writer = Recorder()
    sales._roles_and_items(writer, None, [sale])  # type: ignore[arg-type]
    [call] = writer.calls
    assert [r["attributes"]["type"] for r in call[0][2]] == ["OpportunityLineItem"] * 3
    assert all(sale.result["line_items"])
