"""`org check` for the multi-site sync: the configured objects are described and each field
the sync writes is checked (exists, writable, keys External IDs, lookups to the right object);
against the local org, the package's objects pass and a wrong lookup is named."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.config import OrgConfig
from bridge.devorg.testing import DevOrg
from bridge.salesforce import check
from bridge.salesforce.connection import connect
from bridge.salesforce.sitecheck import check_sites, site_objects
from tests.org_doubles import field, sobject
from tests.writeback.test_e2e_devorg import write_config


def _org(sites: dict[str, Any] | None) -> OrgConfig:
    sales = {} if sites is None else {"sites": sites}
    return OrgConfig.model_validate(
        {
            "programs": [{"key": "partners", "name": "Partners"}],
            "receiver": {"program": "partners"},
            "writeback": {"sales": sales},
        }
    )


def _describes(**changes: dict[str, Any]) -> dict[str, Any]:
    """The package's objects as a describe shows them; `changes` per field name (on the
    site object)."""
    writable = {"createable": True, "updateable": True}
    site = sobject("SFBridge_Site__c", [
        field("Name", **writable), field("Site_Key__c", externalId=True), field("Location__c"),
        field("Account__c", "reference", referenceTo=["Account"]),
        field("Organization__c", "reference", referenceTo=["SFBridge_Organization__c"]),
    ])  # fmt: skip
    for f in site["fields"]:
        f.update(changes.get(f["name"], {}))
    organization = sobject("SFBridge_Organization__c", [
        field("Name", **writable), field("Organization_Key__c", externalId=True),
        field("Account__c", "reference", referenceTo=["Account"]),
    ])  # fmt: skip
    return {"SFBridge_Site__c": site, "SFBridge_Organization__c": organization}


def test_no_sites_config_checks_nothing() -> None:
    assert site_objects(_org(None)) == {} and check_sites(_org(None), _describes()) == []


def test_the_package_objects_pass() -> None:
    org = _org({})
    assert site_objects(org) == {
        "SFBridge_Site__c": {"read", "create", "update"},
        "SFBridge_Organization__c": {"read", "create", "update"},
    }
    findings = check_sites(org, _describes())
    assert [(f.subject, f.status) for f in findings] == [
        ("SFBridge_Site__c.Site_Key__c", "Ok"),
        ("SFBridge_Site__c.Name", "Ok"),
        ("SFBridge_Site__c.Account__c", "Ok"),
        ("SFBridge_Site__c.Location__c", "Ok"),
        ("SFBridge_Site__c.Organization__c", "Ok"),
        ("SFBridge_Organization__c.Organization_Key__c", "Ok"),
        ("SFBridge_Organization__c.Name", "Ok"),
        ("SFBridge_Organization__c.Account__c", "Ok"),
    ]


@pytest.mark.parametrize(
    ("changes", "subject", "reason"),
    [
        ({"Site_Key__c": {"externalId": False}}, "SFBridge_Site__c.Site_Key__c",
         "writeback.sales.sites.key_field: not an External ID; the bridge upserts "
         "SFBridge_Site__c records by it"),
        ({"Organization__c": {"referenceTo": ["Account"]}}, "SFBridge_Site__c.Organization__c",
         "writeback.sales.sites.organization_field: looks up Account; it must be a lookup to "
         "SFBridge_Organization__c"),
        ({"Location__c": {"updateable": False}}, "SFBridge_Site__c.Location__c",
         "writeback.sales.sites.location_field: read-only for the integration user"),
    ],
)  # fmt: skip
def test_each_problem_is_an_issue_with_its_config_key(
    changes: dict[str, Any], subject: str, reason: str
) -> None:
    findings = {f.subject: f for f in check_sites(_org({}), _describes(**changes))}
    assert findings[subject].status == "Issue"
    assert findings[subject].reason.startswith(reason)
    assert sum(f.status == "Issue" for f in findings.values()) == 1


def test_a_missing_field_is_named() -> None:
    describes = _describes()
    describes["SFBridge_Site__c"]["fields"] = describes["SFBridge_Site__c"]["fields"][:2]
    org = _org({"location_field": "Address__c"})
    findings = {f.subject: f for f in check_sites(org, describes)}
    assert findings["SFBridge_Site__c.Address__c"].status == "Issue"
    assert "location_field: not found" in findings["SFBridge_Site__c.Address__c"].reason


@pytest.mark.e2e
def test_org_check_against_the_local_org(clean_devorg: DevOrg, tmp_path: Any) -> None:
    from bridge.config import load_config
    from bridge.orgs import jwt_credentials, read_private_key

    path = write_config(tmp_path / "sfbridge.yaml", clean_devorg, {"sales": {"sites": {}}})
    org_config = load_config(str(path)).orgs["acme"]
    key = read_private_key(clean_devorg.info["jwt_private_key_path"])
    org = connect(jwt_credentials("acme", org_config, key))
    findings = check.run_check(org, "acme", org_config)
    mine = [f for f in findings if "SFBridge_" in f.subject]
    assert mine and all(f.status == "Ok" for f in mine), [f for f in mine if f.status != "Ok"]
    assert {(f.check, f.subject) for f in mine} >= {
        ("object", "SFBridge_Site__c"),
        ("object", "SFBridge_Organization__c"),
        ("package field", "SFBridge_Site__c.Organization__c"),
        ("sites", "SFBridge_Site__c.Organization__c"),
    }

    # the org's own object, whose lookup points elsewhere
    clean_devorg.control("metadata", {"objects": [{
        "fullName": "Branch__c", "label": "Branch", "fields": [
            {"fullName": "Branch_Key__c", "type": "Text", "externalId": "true"},
            {"fullName": "Customer__c", "type": "Lookup", "referenceTo": "Contact"},
        ],
    }]})  # fmt: skip
    wrong = _org({"object": "Branch__c", "key_field": "Branch_Key__c",
                  "account_field": "Customer__c", "location_field": None,
                  "organization_field": None, "organization": None})  # fmt: skip
    wrong = org_config.model_copy(update={"writeback": wrong.writeback})
    findings = {f.subject: f for f in check.run_check(org, "acme", wrong)}
    assert findings["Branch__c"].status == "Ok"
    assert findings["Branch__c.Customer__c"].status == "Issue"
    assert (
        "looks up Contact; it must be a lookup to Account"
        in findings["Branch__c.Customer__c"].reason
    )
    assert "SFBridge_Site__c.Site_Key__c" not in findings  # not used: not checked
