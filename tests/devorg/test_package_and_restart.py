"""Custom fields from the package dir, upsert by external id, and state kept across restarts."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

FIELD = """<?xml version="1.0" encoding="UTF-8"?>
<CustomField xmlns="http://soap.sforce.com/2006/04/metadata">
    <fullName>{name}</fullName>
    {extra}
    <label>{label}</label>
    <type>{type}</type>
</CustomField>
"""


def _field(root: Path, obj: str, name: str, type_: str, extra: str = "") -> None:
    folder = root / "main" / "default" / "objects" / obj / "fields"
    folder.mkdir(parents=True, exist_ok=True)
    text = FIELD.format(name=name, label=name.replace("__c", "").replace("_", " "), type=type_,
                        extra=extra)  # fmt: skip
    (folder / f"{name}.field-meta.xml").write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def package_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrg]:
    package = tmp_path_factory.mktemp("force-app")
    unique_ext = "<externalId>true</externalId><length>64</length><unique>true</unique>"
    _field(package, "Lead", "Referral_ID__c", "Text", unique_ext)
    _field(
        package,
        "Contact",
        "Referral_ID__c",
        "Text",
        "<externalId>true</externalId><length>64</length>",
    )
    _field(package, "Lead", "Referring_Member_Email__c", "Email")
    _field(package, "Lead", "Referral_URL__c", "Url")
    _field(
        package, "Lead", "Referral_Source__c", "Picklist",
        "<valueSet><restricted>true</restricted><valueSetDefinition>"
        "<value><fullName>Partner</fullName><default>false</default><label>Partner</label></value>"
        "<value><fullName>Customer</fullName><default>false</default><label>Customer</label></value>"
        "</valueSetDefinition></valueSet>",
    )  # fmt: skip
    _field(package, "Activity", "SFBridge_Activity_Id__c", "Text",
           "<externalId>true</externalId><length>100</length>")  # fmt: skip
    org = DevOrg(tmp_path_factory.mktemp("package-org"), package_dir=package)
    org.start()
    yield org
    org.close()


def test_custom_fields_are_described(package_org: DevOrg) -> None:
    sf = package_org.sf()
    lead = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    ref = lead["Referral_ID__c"]
    assert (ref["custom"], ref["externalId"], ref["unique"], ref["length"]) == (
        True,
        True,
        True,
        64,
    )
    assert lead["Referring_Member_Email__c"]["type"] == "email"
    assert lead["Referral_URL__c"]["type"] == "url"
    assert [v["value"] for v in lead["Referral_Source__c"]["picklistValues"]] == [
        "Partner", "Customer",
    ]  # fmt: skip
    for activity in ("Task", "Event"):  # an Activity field shows on both
        fields = {f["name"]: f for f in getattr(sf, activity).describe()["fields"]}
        assert fields["SFBridge_Activity_Id__c"]["externalId"] is True
        assert fields["SFBridge_Activity_Id__c"]["length"] == 100
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.create({"LastName": "X", "Company": "Y", "Referral_Source__c": "Billboard"})
    assert err.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_upsert_by_external_id(package_org: DevOrg) -> None:
    sf = package_org.sf()
    created = sf.Lead.upsert("Referral_ID__c/R-100", {"LastName": "New", "Company": "Up"},
                             raw_response=True)  # fmt: skip
    assert created.status_code == 201
    body = created.json()
    assert body["created"] is True and body["success"] is True
    lead_id = body["id"]
    updated = sf.Lead.upsert("Referral_ID__c/r-100", {"Title": "Matched case-insensitively"},
                             raw_response=True)  # fmt: skip
    assert updated.status_code == 200  # API 46.0 and later; 204 before
    assert updated.json() == {"id": lead_id, "success": True, "errors": [], "created": False}
    assert (
        sf.Lead.get_by_custom_id("Referral_ID__c", "R-100")["Title"] == "Matched case-insensitively"
    )

    old_api = package_org.sf(version="45.0")
    assert old_api.Lead.upsert("Referral_ID__c/R-100", {"Title": "old"}) == 204

    with pytest.raises(SalesforceMalformedRequest) as dup:
        sf.Lead.create({"LastName": "Dup", "Company": "Up", "Referral_ID__c": "R-100"})
    assert dup.value.content[0]["errorCode"] == "DUPLICATE_VALUE"
    assert lead_id in dup.value.content[0]["message"]

    sf.Contact.create({"LastName": "One", "Referral_ID__c": "SHARED"})
    sf.Contact.create({"LastName": "Two", "Referral_ID__c": "SHARED"})
    with pytest.raises(SalesforceMoreThanOneRecord) as many:
        sf.Contact.upsert("Referral_ID__c/SHARED", {"Title": "x"})
    assert len(many.value.content) == 2
    assert all(
        url.startswith("/services/data/v63.0/sobjects/Contact/003") for url in many.value.content
    )
    with pytest.raises(SalesforceResourceNotFound) as unknown:
        sf.Contact.upsert("Nope__c/1", {"LastName": "x"})
    assert unknown.value.content[0]["errorCode"] == "NOT_FOUND"

    tasks = sf.restful(
        "composite/sobjects/Task/SFBridge_Activity_Id__c",
        method="PATCH",
        json={"allOrNone": True, "records": [
            {"attributes": {"type": "Task"}, "SFBridge_Activity_Id__c": f"act-{n}",
             "Subject": "Email", "WhoId": lead_id, "Status": "Completed"}
            for n in range(3)
        ]},
    )  # fmt: skip
    assert [t["created"] for t in tasks] == [True, True, True]
    again = sf.restful(
        "composite/sobjects/Task/SFBridge_Activity_Id__c",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Task"}, "SFBridge_Activity_Id__c": "act-1",
                           "Subject": "Call"}]},
    )  # fmt: skip
    assert again == [{"id": tasks[1]["id"], "success": True, "errors": [], "created": False}]
    task = sf.Task.get(tasks[1]["id"])
    assert (task["Subject"], task["IsClosed"], task["WhoId"]) == ("Call", True, lead_id)


def test_state_survives_restart_and_sigterm_is_clean(package_org: DevOrg) -> None:
    sf = package_org.sf("integration")
    account = sf.Account.create({"Name": "Durable"})["id"]
    topic = sf.PushTopic.create(
        {"Name": "SFB_Lead", "Query": "SELECT Id, Email FROM Lead", "ApiVersion": 63.0}
    )["id"]
    deleted = sf.Account.create({"Name": "Binned"})["id"]
    sf.Account.delete(deleted)
    token = package_org.token("sales")
    package_org.control("clock", {"advance_seconds": 600})
    info_before = dict(package_org.info)

    assert package_org.stop() == 0
    assert "devorg: stopped" in package_org.log_text()
    package_org.start()

    assert package_org.info["client_id"] == info_before["client_id"]
    assert package_org.info["org_id"] == info_before["org_id"]
    assert package_org.control("clock", method="GET")["offset_seconds"] >= 600
    from simple_salesforce import Salesforce

    same_session = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"],
                              session=package_org.session())  # fmt: skip
    assert same_session.Account.get(account)["Name"] == "Durable"
    assert same_session.PushTopic.get(topic)["NotifyForFields"] == "Referenced"
    binned = same_session.query(
        "SELECT Id FROM Account WHERE IsDeleted = true", include_deleted=True
    )
    assert [r["Id"] for r in binned["records"]] == [deleted]
    package_org.control("expire-tokens")
    with pytest.raises(SalesforceExpiredSession):
        same_session.Account.get(account)
    # new ids continue after the old ones rather than colliding
    assert package_org.sf().Account.create({"Name": "After restart"})["id"] > account


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    from bridge.devorg.testing import _command

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*_command(), "--port", str(port), "--data-dir", str(tmp_path / "org")],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1
    assert f"devorg cannot start: 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
