"""composite/tree, composite/batch and composite/graph against a real devorg process."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

V = "/services/data/v66.0"


def _tree_record(ref: str, sobject: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": sobject, "referenceId": ref}, **fields}


def _post(org: DevOrg, path: str, body: Any) -> tuple[int, Any]:
    http = org.session()
    http.headers["Authorization"] = "Bearer " + org.token()["access_token"]
    r = http.post(f"{org.base_url}{V}/{path}", json=body, timeout=10)
    return r.status_code, r.json()


def test_tree_creates_parents_then_children(clean_devorg: DevOrg) -> None:
    body = {"records": [
        _tree_record("acme", "Account", Name="Acme", Contacts={"records": [
            _tree_record("ann", "Contact", LastName="Ann", Email="ann@acme.test"),
            _tree_record("bob", "Contact", LastName="Bob"),
        ]}, Opportunities={"records": [
            _tree_record("deal", "Opportunity", Name="Deal", StageName="Prospecting",
                         CloseDate="2026-09-30"),
        ]}),
        _tree_record("globex", "Account", Name="Globex"),
    ]}  # fmt: skip
    status, answer = _post(clean_devorg, "composite/tree/Account", body)
    assert status == 201, answer
    assert answer["hasErrors"] is False
    # roots across all trees first, then the second level type by type
    assert [r["referenceId"] for r in answer["results"]] == ["acme", "globex", "ann", "bob", "deal"]
    ids = {r["referenceId"]: r["id"] for r in answer["results"]}
    assert ids["acme"].startswith("001") and ids["ann"].startswith("003")
    sf = clean_devorg.sf()
    assert sf.Contact.get(ids["ann"])["AccountId"] == ids["acme"]
    assert sf.Opportunity.get(ids["deal"])["AccountId"] == ids["acme"]


def test_tree_is_all_or_none_and_checks_its_input(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    bad_email = {"records": [
        _tree_record("ref1", "Account", Name="Rolled back", Contacts={"records": [
            _tree_record("ref2", "Contact", LastName="Smith", Email="123"),
        ]}),
    ]}  # fmt: skip
    status, answer = _post(clean_devorg, "composite/tree/Account", bad_email)
    assert status == 400
    # the guide's failure example, field for field
    assert answer == {"hasErrors": True, "results": [{"referenceId": "ref2", "errors": [{
        "statusCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: 123",
        "fields": ["Email"]}]}]}  # fmt: skip
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0  # the parent rolled back

    twice = {"records": [_tree_record("same", "Account", Name="A"),
                         _tree_record("same", "Account", Name="B")]}  # fmt: skip
    status, answer = _post(clean_devorg, "composite/tree/Account", twice)
    assert status == 400 and len(answer["results"]) == 2  # one item per duplicate
    assert answer["results"][0]["errors"][0]["message"] == (
        "Duplicate ReferenceId provided in the request"
    )
    wrong_type = {"records": [_tree_record("c1", "Contact", LastName="X")]}
    status, answer = _post(clean_devorg, "composite/tree/Account", wrong_type)
    assert status == 400 and answer["results"][0]["referenceId"] == "c1"
    bad_ref = {"records": [_tree_record("_x", "Account", Name="X")]}
    status, answer = _post(clean_devorg, "composite/tree/Account", bad_ref)
    assert status == 400 and answer["results"][0]["errors"][0]["statusCode"] == "INVALID_INPUT"

    too_many = {"records": [_tree_record(f"r{n}", "Account", Name=str(n)) for n in range(201)]}
    status, answer = _post(clean_devorg, "composite/tree/Account", too_many)
    assert status == 400 and answer[0]["errorCode"] == "LIMIT_EXCEEDED"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    exactly = {"records": [_tree_record(f"r{n}", "Account", Name=str(n)) for n in range(200)]}
    assert _post(clean_devorg, "composite/tree/Account", exactly)[0] == 201


def test_batch_runs_each_subrequest_on_its_own(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    acme = sf.Account.create({"Name": "Acme"})["id"]
    usage_before = clean_devorg.control("stats", method="GET")["api_usage"]["used"]
    status, answer = _post(clean_devorg, "composite/batch", {"batchRequests": [
        {"method": "PATCH", "url": f"v66.0/sobjects/account/{acme}",
         "richInput": {"Name": "NewName"}},
        {"method": "GET", "url": f"v66.0/sobjects/account/{acme}?fields=Name,BillingPostalCode"},
        {"method": "POST", "url": "v66.0/sobjects/Contact", "richInput": {"FirstName": "No"}},
        {"method": "GET", "url": "v66.0/query?q=SELECT+COUNT()+FROM+Account"},
    ]})  # fmt: skip
    assert status == 200
    assert answer["hasErrors"] is True
    codes = [r["statusCode"] for r in answer["results"]]
    assert codes == [204, 200, 400, 200]
    assert answer["results"][0]["result"] is None
    assert answer["results"][1]["result"]["Name"] == "NewName"  # the PATCH committed first
    assert answer["results"][2]["result"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    # every subrequest counts against the daily limit (the token grant above did not)
    usage_after = clean_devorg.control("stats", method="GET")["api_usage"]["used"]
    assert usage_after - usage_before == 4

    status, halted = _post(clean_devorg, "composite/batch", {"haltOnError": True, "batchRequests": [
        {"method": "POST", "url": "v66.0/sobjects/Contact", "richInput": {"FirstName": "No"}},
        {"method": "POST", "url": "v66.0/sobjects/Contact", "richInput": {"LastName": "Never"}},
    ]})  # fmt: skip
    assert [r["statusCode"] for r in halted["results"]] == [400, 412]
    assert halted["results"][1]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0

    over = {"batchRequests": [{"method": "GET", "url": "v66.0/limits"}] * 26}
    status, answer = _post(clean_devorg, "composite/batch", over)
    assert status == 400 and answer[0]["errorCode"] == "INVALID_BATCH_REQUEST"
    status, answer = _post(clean_devorg, "composite/batch", {"batchRequests": [{"url": "x"}]})
    assert status == 400  # a subrequest without a method: nothing runs


def test_graph_each_graph_all_or_none(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    body = {"graphs": [
        {"graphId": "good", "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "acct",
             "body": {"Name": "Graph Co"}},
            {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "con",
             "body": {"LastName": "Node", "AccountId": "@{acct.id}"}},
            {"method": "GET", "url": f"{V}/sobjects/Contact/@{{con.id}}", "referenceId": "read"},
        ]},
        {"graphId": "bad", "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "a2",
             "body": {"Name": "Rolled back"}},
            {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "c2",
             "body": {"AccountId": "@{a2.id}"}},
        ]},
    ]}  # fmt: skip
    status, answer = _post(clean_devorg, "composite/graph", body)
    assert status == 200
    good, bad = answer["graphs"]
    assert (good["graphId"], good["isSuccessful"]) == ("good", True)
    responses = good["graphResponse"]["compositeResponse"]
    assert [r["httpStatusCode"] for r in responses] == [201, 201, 200]
    assert responses[2]["body"]["AccountId"] == responses[0]["body"]["id"]
    assert (bad["graphId"], bad["isSuccessful"]) == ("bad", False)
    failed = bad["graphResponse"]["compositeResponse"]
    assert failed[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert failed[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    names = [r["Name"] for r in sf.query("SELECT Name FROM Account")["records"]]
    assert names == ["Graph Co"]


@pytest.mark.parametrize(
    ("graphs", "code"),
    [
        ([{"graphId": "q", "compositeRequest": [
            {"method": "GET", "url": f"{V}/query?q=SELECT+Id+FROM+Account",
             "referenceId": "r"}]}], "INVALID_INPUT"),  # only sObject rows in a graph
        ([{"graphId": "dup", "compositeRequest": [
            {"method": "GET", "url": f"{V}/limits", "referenceId": "r"}]}] * 2, "INVALID_INPUT"),
        ([{"graphId": f"g{n}", "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "r",
             "body": {"Name": "x"}}]} for n in range(76)], "LIMIT_EXCEEDED"),
        ([{"graphId": "deep", "compositeRequest": [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": "n0",
             "body": {"Name": "x"}}] + [
            {"method": "POST", "url": f"{V}/sobjects/Account", "referenceId": f"n{n}",
             "body": {"Name": "x", "ParentId": f"@{{n{n - 1}.id}}"}} for n in range(1, 16)
        ]}], "LIMIT_EXCEEDED"),
    ],
)  # fmt: skip
def test_graph_limits(clean_devorg: DevOrg, graphs: list[Any], code: str) -> None:
    status, answer = _post(clean_devorg, "composite/graph", {"graphs": graphs})
    assert status == 400, answer
    assert answer[0]["errorCode"] == code
    assert clean_devorg.sf().query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_composite_resources_are_listed(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    listed = sf.restful("composite")
    assert set(listed) == {"batch", "tree", "sobjects", "graph"}
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/tree/Account", method="POST", json={"nope": []})
