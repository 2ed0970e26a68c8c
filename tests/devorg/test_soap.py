"""SOAP `convertLead()` on the partner endpoint of a real devorg process, sent as raw SOAP XML
the way the SOAP API Developer Guide shows it and read back with defusedxml."""

from __future__ import annotations

from typing import Any

import pytest
from defusedxml import ElementTree

from bridge.devorg.testing import DevOrg

pytestmark = pytest.mark.e2e

SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def envelope(session_id: str, body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="{SOAPENV}" '
        f'xmlns:urn="{PARTNER}"><soapenv:Header><urn:SessionHeader>'
        f"<urn:sessionId>{session_id}</urn:sessionId></urn:SessionHeader></soapenv:Header>"
        f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )


def lead_convert(**options: Any) -> str:
    parts = []
    for name, value in options.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f"<urn:{name}>{text}</urn:{name}>")
    return "<urn:leadConverts>" + "".join(parts) + "</urn:leadConverts>"


def post(org: DevOrg, xml: str, version: str = "63.0") -> tuple[int, Any]:
    r = org.session().post(
        f"{org.base_url}/services/Soap/u/{version}",
        data=xml.encode(),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
        timeout=30,
    )
    return r.status_code, ElementTree.fromstring(r.content)


def results(root: Any) -> list[dict[str, Any]]:
    body = root.find(f"{{{SOAPENV}}}Body")
    out = []
    for result in body.find(f"{{{PARTNER}}}convertLeadResponse"):
        row: dict[str, Any] = {}
        for child in result:
            tag = child.tag.split("}")[1]
            if tag == "errors":
                row.setdefault("errors", []).append({e.tag.split("}")[1]: e.text for e in child})
            else:
                row[tag] = None if child.get(XSI_NIL) == "true" else child.text
        out.append(row)
    return out


def fault(root: Any) -> tuple[str, str]:
    f = root.find(f"{{{SOAPENV}}}Body/{{{SOAPENV}}}Fault")
    return f.findtext("faultcode"), f.findtext("faultstring")


def test_convert_lead_through_soap(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    token = clean_devorg.token("integration")["access_token"]
    lead = sf.Lead.create(
        {"FirstName": "Ada", "LastName": "Lovelace", "Company": "Engines", "Email": "ada@e.test",
         "Phone": "+1 555 0100", "City": "London"}
    )["id"]  # fmt: skip
    second = sf.Lead.create(
        {"LastName": "Babbage", "Company": "Engines", "Phone": "+44 20 1111", "City": "London",
         "Industry": "Machinery"}
    )["id"]  # fmt: skip
    account = sf.Account.create({"Name": "Engines Ltd", "Phone": "+44 20 0000"})["id"]
    sales = clean_devorg.user("sales")["id"]

    status, root = post(
        clean_devorg,
        envelope(
            token,
            "<urn:convertLead>"
            + lead_convert(leadId=lead, convertedStatus="Closed - Converted",
                           doNotCreateOpportunity=False, opportunityName="Engines - demo",
                           ownerId=sales)
            + lead_convert(leadId=second, accountId=account, convertedStatus="Closed - Converted",
                           doNotCreateOpportunity=True)
            + lead_convert(leadId=lead, convertedStatus="Closed - Converted")
            + lead_convert(leadId=second, convertedStatus="Qualified")
            + "</urn:convertLead>",
        ),
    )  # fmt: skip
    assert status == 200
    first, merged, again, bad_status = results(root)
    assert first["success"] == "true" and first["leadId"] == lead
    converted = sf.Lead.get(lead)
    assert converted["IsConverted"] is True
    assert (converted["ConvertedAccountId"], converted["ConvertedContactId"]) == (
        first["accountId"], first["contactId"]
    )  # fmt: skip
    assert converted["ConvertedOpportunityId"] == first["opportunityId"]
    contact = sf.Contact.get(first["contactId"])
    assert (contact["Email"], contact["MailingCity"], contact["AccountId"]) == (
        "ada@e.test", "London", first["accountId"]
    )  # fmt: skip
    opportunity = sf.Opportunity.get(first["opportunityId"])
    assert (opportunity["Name"], opportunity["OwnerId"]) == ("Engines - demo", sales)
    assert sf.Account.get(first["accountId"])["OwnerId"] == sales

    assert (merged["success"], merged["accountId"], merged["opportunityId"]) == (
        "true", account, None
    )  # fmt: skip
    assert sf.Contact.get(merged["contactId"])["AccountId"] == account
    # converting into an existing account fills only its empty fields
    existing = sf.Account.get(account)
    assert (existing["Name"], existing["Phone"]) == ("Engines Ltd", "+44 20 0000")
    assert (existing["BillingCity"], existing["Industry"]) == ("London", "Machinery")

    assert again["success"] == "false"
    assert again["errors"][0]["statusCode"] == "INVALID_STATUS"
    assert bad_status["success"] == "false"  # the second lead is converted already
    stats = clean_devorg.control("stats", method="GET")["api_calls"]["by_endpoint"]
    assert stats["POST Soap/u/convertLead"] == 1
    limit = root.find(f"{{{SOAPENV}}}Header/{{{PARTNER}}}LimitInfoHeader/{{{PARTNER}}}limitInfo")
    assert limit.findtext(f"{{{PARTNER}}}type") == "API REQUESTS"


def test_a_bad_converted_status_and_an_unknown_lead(clean_devorg: DevOrg) -> None:
    sf = clean_devorg.sf("integration")
    token = clean_devorg.token("integration")["access_token"]
    lead = sf.Lead.create({"LastName": "Lee", "Company": "Co"})["id"]
    _, root = post(
        clean_devorg,
        envelope(
            token,
            "<urn:convertLead>"
            + lead_convert(leadId=lead, convertedStatus="Qualified")
            + lead_convert(leadId="00Q000000000000AAA", convertedStatus="Closed - Converted")
            + lead_convert(convertedStatus="Closed - Converted")
            + "</urn:convertLead>",
        ),
    )
    bad_status, unknown, no_lead = results(root)
    assert (bad_status["success"], bad_status["errors"][0]["statusCode"]) == (
        "false",
        "INVALID_STATUS",
    )
    assert sf.Lead.get(lead)["IsConverted"] is False  # nothing half-done
    assert unknown["success"] == "false" and unknown["errors"][0]["statusCode"] == "NOT_FOUND"
    assert no_lead["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"


def test_soap_faults(clean_devorg: DevOrg) -> None:
    status, root = post(clean_devorg, envelope("not-a-session", "<urn:convertLead/>"))
    assert status == 500
    assert fault(root) == (
        "sf:INVALID_SESSION_ID",
        "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session",
    )
    token = clean_devorg.token("integration")["access_token"]
    status, root = post(clean_devorg, envelope(token, "<urn:merge/>"))
    assert status == 500
    code, text = fault(root)
    assert code == "soapenv:Client"
    assert text.startswith("No operation available for request {urn:partner.soap.sforce.com}merge")
    status, root = post(clean_devorg, "<not-xml")
    assert status == 500 and fault(root)[0] == "soapenv:Client"
    entity = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
    status, root = post(clean_devorg, entity)
    assert status == 500 and fault(root)[0] == "soapenv:Client"  # entities are refused
    r = clean_devorg.session().post(f"{clean_devorg.base_url}/services/Soap/u/99.0", data=b"")
    assert r.status_code == 404
