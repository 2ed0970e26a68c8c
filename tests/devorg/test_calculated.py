"""Formula fields of the local org (strict mode `formula_fields`), over HTTPS: described as
calculated, computed from the record and its parent, changed by a parent's edit without a new
SystemModstamp on the record."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

TIER = {
    "object": "Contact",
    "field": "Account_Tier__c",
    "type": "Text",
    "formula": "IF(Account.NumberOfEmployees > 1000, 'Enterprise', 'SMB')",
}
SHOUT = {"object": "Contact", "field": "Shout__c", "type": "Text", "formula": "UPPER(LastName)"}


def contact(sf: Any, contact_id: str) -> dict[str, Any]:
    rows = sf.query(
        "SELECT Id, Account_Tier__c, Shout__c, SystemModstamp, LastModifiedDate FROM Contact "
        f"WHERE Id = '{contact_id}'"
    )["records"]
    return dict(rows[0])


def test_a_formula_field_follows_its_parent_without_touching_the_record(
    clean_devorg: DevOrg,
) -> None:
    clean_devorg.control("strict", {"duplicate_rules": "off", "formula_fields": [TIER, SHOUT]})
    sf = clean_devorg.sf("sales")
    described = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    tier = described["Account_Tier__c"]
    assert tier["calculated"] is True and tier["calculatedFormula"] == TIER["formula"]
    assert tier["createable"] is False and tier["updateable"] is False

    account = sf.Account.create({"Name": "Acme", "NumberOfEmployees": 50})["id"]
    contact_id = sf.Contact.create({"LastName": "Lee", "AccountId": account})["id"]
    before = contact(sf, contact_id)
    assert (before["Account_Tier__c"], before["Shout__c"]) == ("SMB", "LEE")
    assert sf.Contact.get(contact_id)["Account_Tier__c"] == "SMB"

    clean_devorg.control("clock", {"advance_seconds": 5})
    sf.Account.update(account, {"NumberOfEmployees": 5000})
    after = contact(sf, contact_id)
    assert after["Account_Tier__c"] == "Enterprise"
    assert after["SystemModstamp"] == before["SystemModstamp"]
    assert after["LastModifiedDate"] == before["LastModifiedDate"]
    # ... and the record's own fields recompute it on its save
    sf.Contact.update(contact_id, {"LastName": "Ng"})
    assert contact(sf, contact_id)["Shout__c"] == "NG"


def test_a_formula_field_cannot_be_written_and_bad_definitions_are_refused(
    clean_devorg: DevOrg,
) -> None:
    clean_devorg.control("strict", {"duplicate_rules": "off", "formula_fields": [SHOUT]})
    sf = clean_devorg.sf("sales")
    with pytest.raises(Exception, match="INVALID_FIELD_FOR_INSERT_UPDATE|Unable to create"):
        sf.Contact.create({"LastName": "Lee", "Shout__c": "x"})
    http = clean_devorg.session()
    for bad, words in (
        ({**SHOUT, "field": "Shout"}, "custom field name"),
        ({**SHOUT, "field": "LastName__c", "formula": "NoSuchField"}, "formula_fields[0]"),
        ({**SHOUT, "type": "Date"}, "type is one of"),
    ):
        r: requests.Response = http.post(
            f"{clean_devorg.base_url}/__devorg__/strict",
            json={"formula_fields": [bad]},
            timeout=10,
        )
        assert r.status_code == 400 and words in r.text, r.text
