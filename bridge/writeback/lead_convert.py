"""Lead conversion through the SOAP API's `convertLead()` (partner endpoint), the documented way
to turn a Lead into a Contact (and connect it to an Account) from outside Salesforce: REST has no
conversion resource.

`convert(writer, converts)` sends up to 200 LeadConverts in one call and returns one result per
convert, shaped like an sObject Collections result (`success`, `errors`) plus the converted
`contactId` / `accountId` / `opportunityId`. The access token travels as
`SessionHeader/sessionId`; an `INVALID_SESSION_ID` fault is raised as that Salesforce error
inside the org's `call`, so the connection re-authenticates once as for REST. Sources: SOAP API
Developer Guide, convertLead(), LeadConvert, LeadConvertResult.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET

from bridge.salesforce.errors import make_error
from bridge.writeback.client import COLLECTION_LIMIT, direct_call

ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"


def _element(tag: str, value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<urn:{tag}>{escape(str(value))}</urn:{tag}>"


def request_body(session_id: str, converts: list[dict[str, Any]]) -> str:
    """The envelope; each convert's keys are LeadConvert elements, in the WSDL's sequence
    (accountId, contactId, convertedStatus, doNotCreateOpportunity, leadId, ...)."""
    items = "".join(
        "<urn:leadConverts>"
        + "".join(_element(k, v) for k, v in convert.items() if v is not None)
        + "</urn:leadConverts>"
        for convert in converts
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{ENVELOPE}" xmlns:urn="{PARTNER}">'
        "<soapenv:Header><urn:SessionHeader>"
        f"<urn:sessionId>{escape(session_id)}</urn:sessionId>"
        "</urn:SessionHeader></soapenv:Header>"
        f"<soapenv:Body><urn:convertLead>{items}</urn:convertLead></soapenv:Body>"
        "</soapenv:Envelope>"
    )


def _text(node: Any, tag: str) -> str | None:
    found = node.find(f"{{{PARTNER}}}{tag}")
    if found is None or found.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true":
        return None
    return (found.text or "").strip() or None


def parse_response(status: int, text: str) -> list[dict[str, Any]]:
    """The LeadConvertResults; a fault raises its classified Salesforce error."""
    root = SafeET.fromstring(text)
    fault = root.find(f"{{{ENVELOPE}}}Body/{{{ENVELOPE}}}Fault")
    if fault is not None:
        code = (fault.findtext("faultcode") or "UNKNOWN_EXCEPTION").split(":")[-1]
        raise make_error(code, fault.findtext("faultstring") or code, status=status)
    results = []
    for node in root.iter(f"{{{PARTNER}}}result"):
        errors = [
            {
                "statusCode": _text(e, "statusCode"),
                "message": _text(e, "message"),
                "fields": [f.text for f in e.findall(f"{{{PARTNER}}}fields") if f.text],
            }
            for e in node.findall(f"{{{PARTNER}}}errors")
        ]
        results.append(
            {
                "success": _text(node, "success") == "true",
                "leadId": _text(node, "leadId"),
                "contactId": _text(node, "contactId"),
                "accountId": _text(node, "accountId"),
                "opportunityId": _text(node, "opportunityId"),
                "errors": errors,
            }
        )
    return results


def convert(writer: Any, converts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Convert the Leads (one call per 200) on the writer's org; one result per convert."""
    call = getattr(writer, "call", direct_call)
    out: list[dict[str, Any]] = []
    for start in range(0, len(converts), COLLECTION_LIMIT):
        part = converts[start : start + COLLECTION_LIMIT]

        def send(part: list[dict[str, Any]] = part) -> list[dict[str, Any]]:
            sf = writer.org.sf if getattr(writer, "org", None) is not None else writer.sf
            response = sf.session.post(
                f"https://{sf.sf_instance}/services/Soap/u/{sf.sf_version}",
                data=request_body(sf.session_id, part).encode(),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                timeout=60,
            )
            return parse_response(response.status_code, response.text)

        results = call(send)
        if len(results) != len(part):
            raise make_error(
                "UNEXPECTED_RESPONSE", f"convertLead answered {len(results)} of {len(part)}"
            )
        out.extend(results)
    return out
