"""Custom objects declared in a package (`objects/X__c/X__c.object-meta.xml` and its fields) in a
real devorg process: describe, CRUD, SOQL with lookups to Account both ways, master-detail
cascades, and a custom user lookup on Account (what account ownership rules read)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

MD = 'xmlns="http://soap.sforce.com/2006/04/metadata"'


def _object(root: Path, name: str, name_field: str) -> Path:
    folder = root / "main" / "default" / "objects" / name
    (folder / "fields").mkdir(parents=True)
    (folder / f"{name}.object-meta.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<CustomObject {MD}>\n'
        f"<label>{name[:-3].replace('_', ' ')}</label>"
        f"<pluralLabel>{name[:-3].replace('_', ' ')}s</pluralLabel>"
        f"{name_field}<deploymentStatus>Deployed</deploymentStatus>"
        "<sharingModel>ReadWrite</sharingModel></CustomObject>\n"
    )
    return folder / "fields"


def _field(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.field-meta.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<CustomField {MD}>\n'
        f"<fullName>{name}</fullName><label>{name[:-3]}</label>{body}</CustomField>\n"
    )


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrg]:
    package = tmp_path_factory.mktemp("package")
    orgs = _object(
        package, "Client_Organization__c", "<nameField><label>Organization Name</label>"
        "<type>Text</type></nameField>",
    )  # fmt: skip
    _field(orgs, "Code__c", "<type>Text</type><length>20</length><externalId>true</externalId>"
           "<unique>true</unique>")  # fmt: skip
    sites = _object(
        package, "Site__c", "<nameField><label>Site Number</label><type>AutoNumber</type>"
        "<displayFormat>SITE-{0000}</displayFormat></nameField>",
    )  # fmt: skip
    _field(
        sites,
        "Account__c",
        "<type>Lookup</type><referenceTo>Account</referenceTo>"
        "<relationshipName>Sites</relationshipName><deleteConstraint>SetNull</deleteConstraint>",
    )
    _field(
        sites,
        "Client_Organization__c",
        "<type>MasterDetail</type><referenceTo>Client_Organization__c</referenceTo>"
        "<relationshipName>Sites</relationshipName>",
    )
    _field(sites, "City__c", "<type>Text</type><length>80</length>")
    account = package / "main" / "default" / "objects" / "Account" / "fields"
    account.mkdir(parents=True)
    _field(account, "Sales_Owner__c", "<type>Lookup</type><referenceTo>User</referenceTo>"
           "<relationshipName>Owned_Accounts</relationshipName>")  # fmt: skip
    devorg = DevOrg(tmp_path_factory.mktemp("custom-devorg"), package_dir=package)
    devorg.start()
    yield devorg
    devorg.close()


def test_describe_of_package_objects(org: DevOrg) -> None:
    sf = org.sf("integration")
    listed = {o["name"]: o for o in sf.describe()["sobjects"]}
    assert listed["Site__c"]["custom"] is True
    site = sf.Site__c.describe()
    assert (site["label"], site["labelPlural"], site["custom"]) == ("Site", "Sites", True)
    assert site["keyPrefix"].startswith("a0") and len(site["keyPrefix"]) == 3
    fields = {f["name"]: f for f in site["fields"]}
    assert fields["Name"]["label"] == "Site Number" and fields["Name"]["createable"] is False
    assert fields["Account__c"]["referenceTo"] == ["Account"]
    assert fields["Account__c"]["relationshipName"] == "Account__r"
    assert fields["Client_Organization__c"]["nillable"] is False
    assert "OwnerId" not in fields  # a detail record is owned through its master
    assert "OwnerId" in {f["name"] for f in sf.Client_Organization__c.describe()["fields"]}
    children = {
        (c["childSObject"], c["relationshipName"], c["cascadeDelete"])
        for c in sf.Account.describe()["childRelationships"]
    }
    assert ("Site__c", "Sites__r", False) in children
    masters = {
        (c["childSObject"], c["relationshipName"], c["cascadeDelete"])
        for c in sf.Client_Organization__c.describe()["childRelationships"]
    }
    assert ("Site__c", "Sites__r", True) in masters


def test_crud_and_soql_with_lookups_both_ways(org: DevOrg) -> None:
    org.control("reset")
    sf = org.sf("integration")
    account = sf.Account.create({"Name": "Acme"})["id"]
    client = sf.Client_Organization__c.create({"Name": "Acme Group", "Code__c": "ACME"})["id"]
    first = sf.Site__c.create(
        {"Account__c": account, "Client_Organization__c": client, "City__c": "Oslo"}
    )["id"]
    # the master by external id, as an integration writes it
    second = sf.Site__c.create(
        {"Account__c": account, "Client_Organization__r": {"Code__c": "ACME"}, "City__c": "Bergen"}
    )["id"]
    assert [sf.Site__c.get(i)["Name"] for i in (first, second)] == ["SITE-0001", "SITE-0002"]
    unnamed = sf.Client_Organization__c.create({})["id"]
    assert sf.Client_Organization__c.get(unnamed)["Name"] == unnamed  # Name defaults to the Id

    rows = sf.query(
        "SELECT Name, City__c, Account__r.Name, Client_Organization__r.Code__c FROM Site__c "
        f"WHERE Account__c = '{account}' ORDER BY Name"
    )["records"]
    assert [(r["Name"], r["City__c"], r["Account__r"]["Name"]) for r in rows] == [
        ("SITE-0001", "Oslo", "Acme"), ("SITE-0002", "Bergen", "Acme")
    ]  # fmt: skip
    assert rows[0]["Client_Organization__r"]["Code__c"] == "ACME"
    parent = sf.query(
        f"SELECT Name, (SELECT City__c FROM Sites__r ORDER BY City__c) FROM Account "
        f"WHERE Id = '{account}'"
    )["records"][0]
    assert [s["City__c"] for s in parent["Sites__r"]["records"]] == ["Bergen", "Oslo"]

    sf.Site__c.update(first, {"City__c": "Trondheim"})
    assert sf.Site__c.get(first)["City__c"] == "Trondheim"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Site__c.create({"Client_Organization__c": account})
    assert caught.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Site__c.create({"City__c": "Nowhere"})
    assert caught.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Site__c.update(first, {"Client_Organization__c": unnamed})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"

    sf.Account.delete(sf.Account.create({"Name": "Gone"})["id"])
    other = sf.Account.create({"Name": "Moved"})["id"]
    sf.Site__c.update(second, {"Account__c": other})
    sf.Account.delete(other)  # a lookup is cleared when its parent is deleted
    assert sf.Site__c.get(second)["Account__c"] is None

    sf.Client_Organization__c.delete(client)  # master-detail: its sites go with it
    assert sf.query("SELECT COUNT() FROM Site__c")["totalSize"] == 0
    deleted = sf.query("SELECT Id FROM Site__c WHERE IsDeleted = true", include_deleted=True)
    assert sorted(r["Id"] for r in deleted["records"]) == sorted([first, second])


def test_a_custom_user_lookup_on_account(org: DevOrg) -> None:
    org.control("reset")
    sf = org.sf("integration")
    sales = org.user("sales")["id"]
    sf.Account.create({"Name": "Owned", "Industry": "Retail", "Sales_Owner__c": sales})
    sf.Account.create({"Name": "Unowned", "Industry": "Retail"})
    rows = sf.query(
        "SELECT Name, Sales_Owner__c, Sales_Owner__r.Email, Sales_Owner__r.IsActive FROM Account "
        "WHERE Industry = 'Retail' ORDER BY Name"
    )["records"]
    owned, unowned = rows
    assert (owned["Sales_Owner__c"], owned["Sales_Owner__r"]["IsActive"]) == (sales, True)
    assert owned["Sales_Owner__r"]["Email"] == org.user("sales")["username"]
    assert unowned["Sales_Owner__r"] is None
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": "Bad", "Sales_Owner__c": sf.Account.create({"Name": "X"})["id"]})
    assert caught.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    field: dict[str, Any] = next(
        f for f in sf.Account.describe()["fields"] if f["name"] == "Sales_Owner__c"
    )
    assert (field["referenceTo"], field["custom"]) == (["User"], True)


def test_deploying_objects_and_fields_through_the_control_api(org: DevOrg) -> None:
    body = {
        "objects": [
            {
                "fullName": "Location__c",
                "label": "Location",
                "pluralLabel": "Locations",
                "nameField": {"label": "Location Name", "type": "Text"},
                "fields": [
                    {"fullName": "Account__c", "type": "Lookup", "referenceTo": "Account",
                     "relationshipName": "Locations"},
                    {"fullName": "Site__c", "type": "Lookup", "referenceTo": "Site__c",
                     "relationshipName": "Locations"},
                    {"fullName": "Seats__c", "type": "Number", "precision": 5, "scale": 0},
                ],
            }
        ],
        "fields": {
            "Lead": [
                {"fullName": "Sales_Phase__c", "type": "Picklist",
                 "valueSet": {"restricted": True, "values": ["ColdCallCold", "Customer"]}}
            ]
        },
    }  # fmt: skip
    deployed = org.control("metadata", body)["deployed"]
    assert deployed == [
        "Location__c", "Location__c.Account__c", "Location__c.Site__c", "Location__c.Seats__c",
        "Lead.Sales_Phase__c",
    ]  # fmt: skip
    sf = org.sf("integration")
    described = sf.Location__c.describe()
    assert described["custom"] is True
    assert described["keyPrefix"] not in (sf.Site__c.describe()["keyPrefix"], "a01")
    phase = next(f for f in sf.Lead.describe()["fields"] if f["name"] == "Sales_Phase__c")
    assert [v["value"] for v in phase["picklistValues"]] == ["ColdCallCold", "Customer"]

    account = sf.Account.create({"Name": "Acme"})["id"]
    location = sf.Location__c.create({"Name": "HQ", "Account__c": account, "Seats__c": 40})["id"]
    rows = sf.query(
        "SELECT Name, (SELECT Name, Seats__c FROM Locations__r) FROM Account "
        f"WHERE Id = '{account}'"
    )["records"]
    assert [(r["Name"], r["Seats__c"]) for r in rows[0]["Locations__r"]["records"]] == [
        ("HQ", 40.0)
    ]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Lead.create({"LastName": "L", "Company": "C", "Sales_Phase__c": "Resting"})
    assert caught.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"

    org.control("reset")  # records go, deployed metadata stays (as in a real org)
    org.restart()
    sf = org.sf("integration")
    assert sf.query("SELECT COUNT() FROM Location__c")["totalSize"] == 0  # HQ went
    assert location not in {r["Id"] for r in sf.query("SELECT Id FROM Location__c")["records"]}
    assert {"Location__c", "Site__c"} <= set(org.control("metadata", method="GET")["objects"])
    assert sf.Location__c.create({"Name": "Again"})["success"] is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"objects": [{"fullName": "Location"}]}, "is not a custom object name"),
        ({"objects": [{"fullName": "Bad__c", "fields": [{"fullName": "X__c", "type": "Blob"}]}]},
         "type 'Blob' is not one of"),
        ({"fields": {"Lead": [{"fullName": "P__c", "type": "Picklist"}]}}, "needs valueSet"),
        ({"fields": {"Lead": [{"fullName": "R__c", "type": "Lookup", "referenceTo": "Nope__c"}]}},
         "referenceTo 'Nope__c' is no object"),
        ({"fields": {"Nope__c": [{"fullName": "A__c"}]}}, "no object 'Nope__c'"),
        ({"fields": {"Lead": [{"fullName": "N__c", "type": "Number", "precision": "x"}]}},
         "precision must be a number"),
        ({"things": []}, "the body must be"),
    ],
)  # fmt: skip
def test_a_bad_deployment_is_refused_whole(org: DevOrg, body: Any, message: str) -> None:
    before = org.control("metadata", method="GET")
    r = org.session().post(f"{org.base_url}/__devorg__/metadata", json=body, timeout=10)
    assert r.status_code == 400
    assert message in r.json()["error"]
    assert org.control("metadata", method="GET") == before
