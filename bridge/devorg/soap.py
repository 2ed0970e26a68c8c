"""The SOAP API's `convertLead()` call on the partner endpoint, `POST /services/Soap/u/{version}`.

Lead conversion is not a REST resource: Salesforce offers it through SOAP `convertLead()` (and
Apex's `Database.convertLead`), SOAP API Developer Guide: convertLead(), LeadConvert,
LeadConvertResult. The request carries the OAuth access token as `SessionHeader/sessionId`;
each LeadConvert (up to 200) is converted on its own through `dml.convert_lead`, and its
LeadConvertResult says `success` or carries Salesforce's `errors`. Other calls are faults
("No operation available"), as the endpoint answers for an operation it does not know.
Requests are parsed with defusedxml: a SOAP body is untrusted input.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from aiohttp import web
from defusedxml import ElementTree as SafeET

from bridge.devorg import dml
from bridge.devorg.replies import DmlError
from bridge.devorg.state import LATEST_API_VERSION

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element  # noqa: S405 - a type only; parsing is defusedxml

    from bridge.devorg.server import DevOrgServer

ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"
MAX_CONVERTS = 200
_VERSION = re.compile(r"^\d{2}\.0$")
# LeadConvert element -> dml.convert_lead option
_OPTIONS = {
    "leadId": "lead_id",
    "accountId": "account_id",
    "contactId": "contact_id",
    "convertedStatus": "converted_status",
    "opportunityName": "opportunity_name",
    "ownerId": "owner_id",
}
_FLAGS = {"doNotCreateOpportunity": "do_not_create_opportunity"}


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


class SoapApi:
    def __init__(self, server: DevOrgServer) -> None:
        self.server = server
        self.state = server.state

    async def handle(self, request: web.Request) -> web.Response:
        version = request.match_info["version"]
        if not _VERSION.match(version) or not 20.0 <= float(version) <= float(LATEST_API_VERSION):
            return web.Response(status=404, text="Not Found")
        try:
            root = SafeET.fromstring(await request.read())
        except (SafeET.ParseError, ValueError) as exc:  # defusedxml refuses DTDs as ValueErrors
            return _fault("soapenv:Client", f"Unable to parse the request: {exc}")
        body = root.find(_q(ENVELOPE, "Body"))
        session = root.find(
            f"{_q(ENVELOPE, 'Header')}/{_q(PARTNER, 'SessionHeader')}/{_q(PARTNER, 'sessionId')}"
        )
        if root.tag != _q(ENVELOPE, "Envelope") or body is None or len(body) != 1:
            return _fault(
                "soapenv:Client", f"Element {{{ENVELOPE}}}Envelope with one Body expected"
            )
        call = body[0]
        if call.tag != _q(PARTNER, "convertLead"):
            return _fault(
                "soapenv:Client",
                f"No operation available for request {call.tag}, please check the WSDL for the "
                "service.",
            )
        user = (
            self.state.user_for_token((session.text or "").strip()) if session is not None else None
        )
        if user is None:
            return _fault(
                "sf:INVALID_SESSION_ID",
                "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session",
            )
        if not self.state.count_api_call():
            return _fault(
                "sf:REQUEST_LIMIT_EXCEEDED", "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."
            )
        converts = call.findall(_q(PARTNER, "leadConverts"))
        if len(converts) > MAX_CONVERTS:
            return _fault(
                "sf:LIMIT_EXCEEDED", f"LIMIT_EXCEEDED: Exceeded max size limit of {MAX_CONVERTS}"
            )
        self.state.stats.api_call(user.id, "POST Soap/u/convertLead")
        results = [self._convert(_options(convert), user) for convert in converts]
        return _envelope(
            "convertLeadResponse",
            "".join(_result(r) for r in results),
            self.state.api_usage,
            self.state.daily_api_limit,
        )

    def _convert(self, options: dict[str, Any], user: Any) -> dict[str, Any]:
        if not options.get("lead_id"):
            error = {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [leadId]",
                "fields": ["leadId"],
            }
            return {"success": False, "errors": [error]}
        try:
            return dml.convert_lead(self.server, options, user)
        except DmlError as exc:
            errors = [
                {
                    "statusCode": e["errorCode"],
                    "message": e["message"],
                    "fields": e.get("fields") or [],
                }
                for e in exc.errors
            ]
            return {"leadId": None, "success": False, "errors": errors}


def _options(convert: Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in convert:
        tag = child.tag.split("}", 1)[-1]
        text = (child.text or "").strip()
        nil = child.get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
        if tag in _OPTIONS and text and not nil:
            out[_OPTIONS[tag]] = text
        elif tag in _FLAGS:
            out[_FLAGS[tag]] = text.lower() == "true"
    return out


def _value(tag: str, value: Any) -> str:
    if value is None:
        return f'<{tag} xsi:nil="true"/>'
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{tag}>{escape(str(value))}</{tag}>"


def _result(result: dict[str, Any]) -> str:
    """A LeadConvertResult, its elements in the WSDL's order."""
    errors = "".join(
        "<errors>"
        + "".join(_value("fields", f) for f in e.get("fields") or [])
        + _value("message", e["message"])
        + _value("statusCode", e["statusCode"])
        + "</errors>"
        for e in result.get("errors") or []
    )
    return (
        "<result>"
        + _value("accountId", result.get("accountId"))
        + _value("contactId", result.get("contactId"))
        + errors
        + _value("leadId", result.get("leadId"))
        + _value("opportunityId", result.get("opportunityId"))
        + _value("success", bool(result.get("success")))
        + "</result>"
    )


def _envelope(response: str, inner: str, used: int, limit: int) -> web.Response:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{ENVELOPE}" xmlns="{PARTNER}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Header><LimitInfoHeader><limitInfo>"
        f"<current>{used}</current><limit>{limit}</limit><type>API REQUESTS</type>"
        "</limitInfo></LimitInfoHeader></soapenv:Header>"
        f"<soapenv:Body><{response}>{inner}</{response}></soapenv:Body></soapenv:Envelope>"
    )
    return web.Response(text=text, content_type="text/xml", charset="utf-8")


def _fault(code: str, message: str) -> web.Response:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{ENVELOPE}" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com">'
        f"<soapenv:Body><soapenv:Fault><faultcode>{escape(code)}</faultcode>"
        f"<faultstring>{escape(message)}</faultstring></soapenv:Fault></soapenv:Body>"
        "</soapenv:Envelope>"
    )
    return web.Response(status=500, text=text, content_type="text/xml", charset="utf-8")


def setup(app: web.Application, server: DevOrgServer) -> SoapApi:
    api = SoapApi(server)
    app.router.add_post("/services/Soap/u/{version}", api.handle)
    return api
