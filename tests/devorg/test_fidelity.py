"""Places where the local org was kinder than Salesforce (or refused what Salesforce accepts).

Each test pins a documented Salesforce behaviour against a real devorg process.
"""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e


def _errors(exc: Any) -> list[dict[str, Any]]:
    assert isinstance(exc.content, list), exc.content
    return exc.content


def test_id_in_with_repeated_ids_returns_each_record_once(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    ada = sf.Lead.create({"LastName": "Ada", "Company": "Engines"})["id"]
    bob = sf.Lead.create({"LastName": "Bob", "Company": "Engines"})["id"]
    result = sf.query(f"SELECT Id FROM Lead WHERE Id IN ('{ada}', '{bob}', '{ada}', '{ada[:15]}')")
    assert result["totalSize"] == 2
    assert sorted(r["Id"] for r in result["records"]) == sorted([ada, bob])


def test_semi_join_returns_each_parent_once(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    acme = sf.Account.create({"Name": "Acme"})["id"]
    sf.Account.create({"Name": "No contacts"})
    for name in ("Ann", "Bob", "Cy"):
        sf.Contact.create({"LastName": name, "AccountId": acme})
    result = sf.query("SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Contact)")
    assert result["totalSize"] == 1
    assert [r["Name"] for r in result["records"]] == ["Acme"]


def test_collection_update_accepts_lowercase_id(clean_devorg: DevOrg) -> None:
    # The REST guide's own "Update Multiple Records" example, and jsforce, send "id".
    sf = clean_devorg.sf()
    first = sf.Contact.create({"LastName": "First"})["id"]
    second = sf.Contact.create({"LastName": "Second"})["id"]
    result = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "id": first, "Title": "CEO"},
                {"attributes": {"type": "Contact"}, "ID": second, "Title": "CTO"},
            ],
        },
    )
    assert result == [
        {"id": first, "success": True, "errors": []},
        {"id": second, "success": True, "errors": []},
    ]
    assert sf.Contact.get(first)["Title"] == "CEO"
    assert sf.Contact.get(second)["Title"] == "CTO"


def test_collection_upsert_by_id_with_null_id_creates(clean_devorg: DevOrg) -> None:
    # Recorded from a real org (CumulusCI's TestUpsert cassettes): "Id": null inserts.
    sf = clean_devorg.sf()
    result = sf.restful(
        "composite/sobjects/Account/Id",
        method="PATCH",
        json={"allOrNone": False, "records": [
            {"attributes": {"type": "Account"}, "Name": "Sitwell-Bluth", "Id": None},
        ]},
    )  # fmt: skip
    assert result[0]["success"] is True and result[0]["created"] is True
    assert sf.Account.get(result[0]["id"])["Name"] == "Sitwell-Bluth"


def test_all_day_event_defaults_to_one_day(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    created = sf.Event.create(
        {"Subject": "Offsite", "IsAllDayEvent": True, "ActivityDate": "2026-03-18"}
    )
    event = sf.Event.get(created["id"])
    assert event["IsAllDayEvent"] is True
    assert event["DurationInMinutes"] == 1440
    assert event["ActivityDate"] == "2026-03-18"
    assert event["StartDateTime"] == "2026-03-18T00:00:00.000+0000"
    assert event["EndDate"] == "2026-03-18"

    two_days = sf.Event.create(
        {"Subject": "Fair", "IsAllDayEvent": True, "ActivityDate": "2026-04-01",
         "DurationInMinutes": 2880}
    )  # fmt: skip
    assert sf.Event.get(two_days["id"])["EndDate"] == "2026-04-02"

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Event.create({"Subject": "When?", "IsAllDayEvent": True})
    assert _errors(err.value)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    # A timed event still needs its duration (or an end).
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Event.create({"Subject": "Call", "StartDateTime": "2026-03-18T09:00:00Z"})
    assert _errors(err.value)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


@pytest.mark.parametrize("sobject", ["Task", "Event"])
def test_activity_with_a_lead_cannot_be_related_to_a_record(
    clean_devorg: DevOrg, sobject: str
) -> None:
    sf = clean_devorg.sf()
    lead = sf.Lead.create({"LastName": "Lee", "Company": "Leads Inc"})["id"]
    acme = sf.Account.create({"Name": "Acme"})["id"]
    contact = sf.Contact.create({"LastName": "Con", "AccountId": acme})["id"]
    body: dict[str, Any] = {"Subject": "Call", "WhoId": lead, "WhatId": acme}
    if sobject == "Event":
        body.update({"StartDateTime": "2026-03-18T09:00:00Z", "DurationInMinutes": 30})
    api = getattr(sf, sobject)
    with pytest.raises(SalesforceMalformedRequest) as err:
        api.create(body)
    problem = _errors(err.value)[0]
    assert problem["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert problem["message"].startswith("field integrity exception: WhoId, WhatId")
    assert set(problem["fields"]) == {"WhoId", "WhatId"}

    # A lead alone, or a contact with the account, is fine; adding a WhatId later is refused.
    alone = api.create({**body, "WhatId": None})["id"]
    assert api.create({**body, "WhoId": contact})["success"] is True
    with pytest.raises(SalesforceMalformedRequest) as err:
        api.update(alone, {"WhatId": acme})
    assert _errors(err.value)[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


def test_resources_list_what_is_served_and_identity(clean_devorg: DevOrg) -> None:
    http = clean_devorg.session()
    tok = clean_devorg.token("sales")
    http.headers["Authorization"] = "Bearer " + tok["access_token"]
    base = clean_devorg.base_url
    resources = http.get(f"{base}/services/data/v66.0/", timeout=5).json()
    assert resources["identity"] == tok["id"]
    assert "search" not in resources and "tooling" not in resources
    for name, url in resources.items():
        if name == "identity":
            continue
        answer = http.get(base + url, timeout=5)
        # every advertised resource is served (405: served, but not for GET)
        assert answer.status_code in (200, 400, 405), (name, answer.status_code, answer.text)

    # the identity URL, as jsforce's identity() calls it (format and oauth_token parameters)
    ident = clean_devorg.session().get(
        resources["identity"], params={"format": "json", "oauth_token": tok["access_token"]},
        timeout=5,
    )  # fmt: skip
    assert ident.status_code == 200
    body = ident.json()
    assert body["user_id"] == clean_devorg.user("sales")["id"]
    assert body["organization_id"] == clean_devorg.info["org_id"]
    assert body["id"] == tok["id"]
    assert body["urls"]["rest"].endswith("/services/data/v{version}/")
    versioned = http.get(resources["identity"], params={"version": "66.0"}, timeout=5).json()
    assert versioned["urls"]["rest"].endswith("/services/data/v66.0/")


def test_describe_layouts_is_not_found(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf()
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.restful("sobjects/Lead/describe/layouts")
    problem = _errors(err.value)[0]
    assert problem["errorCode"] == "NOT_FOUND"
    assert "external ID" not in problem["message"]


def test_api_versions_up_to_66(clean_devorg: DevOrg) -> None:
    versions = clean_devorg.session().get(f"{clean_devorg.base_url}/services/data/", timeout=5)
    listed = {v["version"]: v for v in versions.json()}
    assert listed["66.0"] == {
        "label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"
    }  # fmt: skip
    assert listed["64.0"]["label"] == "Summer '25" and listed["65.0"]["label"] == "Winter '26"
    assert listed["20.0"]["label"] == "Winter '11"
    assert len(listed) == 47
    sf = clean_devorg.sf(version="66.0")
    lead = sf.Lead.create({"LastName": "New", "Company": "Release"})["id"]
    assert sf.Lead.get(lead)["attributes"]["url"] == f"/services/data/v66.0/sobjects/Lead/{lead}"
    described = sf.Lead.describe()
    assert described["urls"]["describe"] == "/services/data/v66.0/sobjects/Lead/describe"
    http = clean_devorg.session()
    http.headers["Authorization"] = "Bearer " + clean_devorg.token()["access_token"]
    assert http.get(f"{clean_devorg.base_url}/services/data/v67.0/", timeout=5).status_code == 404
