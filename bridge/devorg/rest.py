"""REST API of the local org: `/services/data/` and `/services/data/vXX.X/...`.

A small router of its own (not aiohttp's) so that `composite` can run subrequests through the
same code as top-level requests. Follows the REST API Developer Guide: resources, sObject
rows, rows by external id, query/queryAll with query locators, composite and sObject
collections, limits, status codes and error responses.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.devorg import composite, dml, ids, organization
from bridge.devorg.dml import Ctx, DmlError, MultipleMatches
from bridge.devorg.query import QueryEngine, batch_size_from
from bridge.devorg.replies import Reply, Request, error_reply, method_not_allowed, not_found
from bridge.devorg.schema import describe, object_summary
from bridge.devorg.soql import SoqlError
from bridge.devorg.state import LATEST_API_VERSION

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer

log = logging.getLogger("bridge.devorg.rest")

MIN_VERSION = 20.0
MAX_COLLECTION = 200
MAX_COMPOSITE = 25
MAX_COMPOSITE_HEAVY = 5  # "Up to 5 of these subrequests can be sObject Collections or query
# operations" (REST API Developer Guide, Composite)
_HEAVY_SUBREQUEST = re.compile(r"^/services/data/v[\d.]+/(query|queryAll|composite/sobjects)\b")
_LIMIT_TEXT = (
    f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call"
)
_VERSION_RE = re.compile(r"^/services/data/v(\d{2,3}\.\d)(/.*)?$")
_REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")


def _releases() -> dict[str, str]:
    """Every served version with its release name: three releases a year, 20.0 = Winter '11."""
    out = {}
    for n in range(int(MIN_VERSION), int(float(LATEST_API_VERSION)) + 1):
        season = ("Winter", "Spring", "Summer")[(n - 20) % 3]
        out[f"{n}.0"] = f"{season} '{11 + (n - 20) // 3:02d}"
    return out


RELEASES = _releases()


Handler = Callable[[Ctx, Request, "list[str]"], Reply]


class RestApi:
    def __init__(self, server: DevOrgServer) -> None:
        self.server = server
        self.state = server.state
        self.schema = server.schema
        self.queries = QueryEngine(server)
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler], str]] = []
        r = self._route
        r(r"/?", {"GET": self.resources}, "")
        r(r"/sobjects/?", {"GET": self.global_describe}, "sobjects")
        r(r"/sobjects/([^/]+)/?", {"GET": self.object_info, "POST": self.create}, "sobjects/{o}")
        r(r"/sobjects/([^/]+)/describe/?", {"GET": self.describe}, "sobjects/{o}/describe")
        # Layouts, compact layouts, approval layouts: not modelled, so not found (rather than
        # being read as an external id field named "describe").
        r(r"/sobjects/([^/]+)/describe/.+", {"GET": self.not_modelled}, "sobjects/{o}/describe/*")
        r(r"/sobjects/([^/]+)/(?:listviews|quickActions)(?:/.*)?", {"GET": self.not_modelled},
          "sobjects/{o}/listviews")  # fmt: skip
        r(r"/sobjects/([^/]+)/updated/?", {"GET": self.updated}, "sobjects/{o}/updated")
        r(r"/sobjects/([^/]+)/deleted/?", {"GET": self.deleted}, "sobjects/{o}/deleted")
        r(
            r"/sobjects/([^/]+)/([^/]+)/?",
            {"GET": self.retrieve, "PATCH": self.update, "DELETE": self.delete},
            "sobjects/{o}/{id}",
        )
        r(
            r"/sobjects/([^/]+)/([^/]+)/(.+)",
            {"GET": self.get_by_external_id, "PATCH": self.upsert,
             "DELETE": self.delete_by_external_id},
            "sobjects/{o}/{field}/{value}",
        )  # fmt: skip
        r(r"/query/?", {"GET": self.query}, "query")
        r(r"/query/([^/]+)/?", {"GET": self.query_more}, "query/{locator}")
        r(r"/queryAll/?", {"GET": self.query_all}, "queryAll")
        r(r"/queryAll/([^/]+)/?", {"GET": self.query_all_more}, "queryAll/{locator}")
        r(
            r"/composite/sobjects/?",
            {"POST": self.collection_create, "PATCH": self.collection_update,
             "DELETE": self.collection_delete},
            "composite/sobjects",
        )  # fmt: skip
        r(
            r"/composite/sobjects/([^/]+)/?",
            {"GET": self.collection_retrieve, "POST": self.collection_retrieve},
            "composite/sobjects/{o}",
        )
        r(
            r"/composite/sobjects/([^/]+)/([^/]+)/?",
            {"PATCH": self.collection_upsert},
            "composite/sobjects/{o}/{field}",
        )
        r(r"/composite/?", {"GET": self.composite_resources, "POST": self.composite}, "composite")
        r(r"/limits/?", {"GET": self.limits}, "limits")
        r(r"/limits/recordCount/?", {"GET": self.record_count}, "limits/recordCount")
        composite.register(self)  # composite/tree, composite/batch, composite/graph

    def _route(self, pattern: str, methods: dict[str, Handler], name: str) -> None:
        self.routes.append((re.compile("^" + pattern + "$"), methods, name))

    def reset(self) -> None:
        self.queries.reset()

    # -- HTTP entry points ------------------------------------------------------------------

    async def versions(self, request: web.Request) -> web.Response:
        body = [
            {"label": label, "url": f"/services/data/v{v}", "version": v}
            for v, label in RELEASES.items()
        ]
        return web.json_response(body)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        m = _VERSION_RE.match(request.path)
        if m is None:
            return self._respond(not_found())
        version = m.group(1)
        if not MIN_VERSION <= float(version) <= float(LATEST_API_VERSION):
            return self._respond(not_found())
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        user = (
            self.state.user_for_token(token.strip())
            if scheme.lower() in ("bearer", "oauth")
            else None
        )
        if user is None:
            return self._respond(
                error_reply(401, "INVALID_SESSION_ID", "Session expired or invalid")
            )
        if not self.state.count_api_call():
            return self._respond(
                error_reply(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            )
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    return self._respond(
                        error_reply(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}")
                    )
        req = Request(
            method=request.method,
            path=m.group(2) or "/",
            query=dict(request.query),
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        ctx = Ctx(self.server, user, version)
        reply, endpoint = self.dispatch(ctx, req)
        self.state.stats.api_call(user.id, f"{request.method} {endpoint}")
        return self._respond(reply)

    def _respond(self, reply: Reply) -> web.Response:
        headers = {
            "Sforce-Limit-Info": f"api-usage={self.state.api_usage}/{self.state.daily_api_limit}",
            **reply.headers,
        }
        if reply.body is None and reply.status == 204:
            return web.Response(status=204, headers=headers)
        text = json.dumps(reply.body, separators=(",", ":"))
        return web.Response(
            status=reply.status, text=text, content_type="application/json", headers=headers
        )

    def dispatch(self, ctx: Ctx, req: Request) -> tuple[Reply, str]:
        for pattern, methods, name in self.routes:
            m = pattern.match(req.path)
            if m is None:
                continue
            handler = methods.get(req.method)
            endpoint = name
            if "{o}" in name and m.groups():
                endpoint = name.replace("{o}", m.group(1))
            if handler is None:
                return method_not_allowed(req.method, ",".join(["HEAD", *methods])), endpoint
            try:
                strict = self.server.strict
                if strict.enabled:  # field-level security on reads (strict.py)
                    strict.check_read(ctx, req.method, req.path, req.query)
                reply = handler(ctx, req, list(m.groups()))
                if strict.enabled:
                    strict.filter_reply(ctx, req.method, req.path, reply.body)
                return reply, endpoint
            except DmlError as exc:
                return Reply(exc.status, exc.errors), endpoint
            except SoqlError as exc:
                return error_reply(400, exc.code, exc.message), endpoint
            except MultipleMatches as exc:
                return Reply(300, exc.urls), endpoint
            except Exception:  # a bug of ours: answer as Salesforce does, keep the traceback
                log.exception("unexpected error in %s %s", req.method, req.path)
                return (
                    error_reply(
                        500,
                        "UNKNOWN_EXCEPTION",
                        "An unexpected error occurred. Please include this ErrorId if you "
                        "contact support: 0000000000-00000 (-0000000000)",
                    ),
                    endpoint,
                )
        return not_found(), req.path

    # -- resources and describe -------------------------------------------------------------

    def resources(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        """The resources of this version: only those served (Salesforce lists many more)."""
        base = f"/services/data/v{ctx.version}"
        names = ["sobjects", "query", "queryAll", "composite", "limits"]
        out = {n: f"{base}/{n}" for n in names}
        # jsforce's identity() reads this to find the identity URL (login URL + /id/org/user).
        out["identity"] = f"{self.server.base_url}/id/{self.state.org_id}/{ctx.user.id}"
        return Reply(200, out)

    def composite_resources(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        base = f"/services/data/v{ctx.version}/composite"
        return Reply(200, {n: f"{base}/{n}" for n in ("batch", "tree", "sobjects", "graph")})

    def not_modelled(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        self._object(g[0])
        return not_found()

    def global_describe(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        return Reply(
            200,
            {
                "encoding": "UTF-8",
                "maxBatchSize": MAX_COLLECTION,
                "sobjects": [object_summary(o, ctx.version) for o in self.schema.objects.values()],
            },
        )

    def _object(self, name: str) -> Any:
        o = self.schema.object(name)
        if o is None:
            raise DmlError.one("NOT_FOUND", "The requested resource does not exist", status=404)
        return o

    def object_info(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        recent = [
            {"attributes": {"type": o.name, "url": dml.record_url(o, r["Id"], ctx.version)},
             "Id": r["Id"], "Name": r.get("Name")}
            for r in list(self.state.records(o.name))[-10:]
        ]  # fmt: skip
        return Reply(200, {"objectDescribe": object_summary(o, ctx.version), "recentItems": recent})

    def describe(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        out = describe(self.schema, o, ctx.version)
        ui = self.server.base_url  # the record pages of the org's UI (not served here)
        out["urls"].update({"uiDetailTemplate": f"{ui}/{{ID}}", "uiEditTemplate": f"{ui}/{{ID}}/e",
                            "uiNewRecord": f"{ui}/{o.key_prefix}/e"})  # fmt: skip
        return Reply(200, out)

    # -- replication (getUpdated / getDeleted) ----------------------------------------------

    def _window(self, req: Request) -> tuple[str, str]:
        bounds = []
        for key in ("start", "end"):
            when = dml.parse_datetime(req.query.get(key, ""))
            if when is None:
                raise DmlError.one(
                    "INVALID_REPLICATION_DATE", f"{key} must be a date-time such as "
                    "2026-01-01T00:00:00+00:00"
                )  # fmt: skip
            bounds.append(dml.format_datetime(when.replace(second=0, microsecond=0)))
        if bounds[0] > bounds[1]:
            raise DmlError.one("INVALID_REPLICATION_DATE", "start must be before end")
        return bounds[0], bounds[1]

    def updated(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        start, end = self._window(req)
        found = [r["Id"] for r in self.state.records(o.name) if start <= r["SystemModstamp"] < end]
        return Reply(200, {"ids": found, "latestDateCovered": end})

    def deleted(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        start, end = self._window(req)
        found = [
            {"id": r["Id"], "deletedDate": r["SystemModstamp"]}
            for r in self.state.records(o.name, include_deleted=True)
            if r.get("IsDeleted") and start <= r["SystemModstamp"] < end
        ]
        return Reply(
            200,
            {"deletedRecords": found, "earliestDateAvailable": start, "latestDateCovered": end},
        )

    # -- rows -------------------------------------------------------------------------------

    def create(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        if not isinstance(req.body, dict):
            raise DmlError.one(
                "JSON_PARSER_ERROR", "The request body must be a JSON object describing a record"
            )
        rid = dml.create(ctx, g[0], req.body)
        o = self._object(g[0])
        return Reply(
            201,
            {"id": rid, "success": True, "errors": []},
            {"Location": dml.record_url(o, rid, ctx.version)},
        )

    def _field_list(self, o: Any, text: str | None) -> list[str] | None:
        if not text:
            return None
        out = []
        for name in (n.strip() for n in text.split(",") if n.strip()):
            fd = o.field(name)
            if fd is None:
                raise DmlError.one(
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{o.name}'. If you are attempting to "
                    "use a custom field, be sure to append the '__c' after the custom field "
                    "name. Please reference your WSDL or the describe call for the appropriate "
                    "names.",
                )
            out.append(fd.name)
        return out

    def retrieve(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        fields = self._field_list(o, req.query.get("fields"))
        rid = ids.normalize(g[1])
        if rid is None or rid[:3] != o.key_prefix:
            # Not an id of this object: Salesforce reads the segment as an external id field.
            raise DmlError.one(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {g[1]}",
                status=404,
            )
        if o.name == organization.NAME:
            org = organization.record(self.server)
            rec = org if rid == org["Id"] else None
        else:
            rec = self.state.get(o.name, rid, include_deleted=True)
        if rec is None:
            return not_found()
        if rec.get("IsDeleted"):
            raise DmlError.one("ENTITY_IS_DELETED", "entity is deleted", status=404)
        return Reply(200, dml.present(o, rec, ctx.version, fields))

    def update(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        if not isinstance(req.body, dict):
            raise DmlError.one(
                "JSON_PARSER_ERROR", "The request body must be a JSON object describing a record"
            )
        dml.update(ctx, g[0], g[1], req.body)
        return Reply(204)

    def delete(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        dml.delete(ctx, g[0], g[1])
        return Reply(204)

    def _external(self, o: Any, field_name: str) -> Any:
        fd = o.field(field_name)
        if fd is None or not (fd.external_id or fd.name == "Id" or fd.id_lookup):
            raise DmlError.one(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field_name}",
                status=404,
            )
        return fd

    def get_by_external_id(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        fd = self._external(o, g[1])
        matches = dml.find_by_field(self.server, o, fd, g[2])
        if not matches:
            return not_found()
        if len(matches) > 1:
            raise MultipleMatches([dml.record_url(o, m, ctx.version) for m in matches])
        fields = self._field_list(o, req.query.get("fields"))
        rec = self.state.get(o.name, matches[0])
        assert rec is not None
        return Reply(200, dml.present(o, rec, ctx.version, fields))

    def upsert(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        if not isinstance(req.body, dict):
            raise DmlError.one(
                "JSON_PARSER_ERROR", "The request body must be a JSON object describing a record"
            )
        created, rid = dml.upsert(ctx, g[0], g[1], g[2], req.body)
        body = {"id": rid, "success": True, "errors": [], "created": created}
        if created:
            return Reply(201, body)
        # Since API 46.0 an upsert that updates answers 200 with the body; before, 204.
        if float(ctx.version) >= 46.0:
            return Reply(200, body)
        return Reply(204)

    def delete_by_external_id(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        fd = self._external(o, g[1])
        matches = dml.find_by_field(self.server, o, fd, g[2])
        if not matches:
            return not_found()
        if len(matches) > 1:
            raise MultipleMatches([dml.record_url(o, m, ctx.version) for m in matches])
        dml.delete(ctx, o.name, matches[0])
        return Reply(204)

    # -- query ------------------------------------------------------------------------------

    def _run_query(self, ctx: Ctx, req: Request, all_rows: bool) -> Reply:
        text = req.query.get("q")
        if text is None:
            raise SoqlError("MALFORMED_QUERY", "The query parameter q is required")
        batch = batch_size_from(req.headers.get("sforce-query-options"))
        return Reply(
            200,
            self.queries.run(
                text, all_rows=all_rows, batch_size=batch, user_id=ctx.user.id, version=ctx.version
            ),
        )

    def query(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        return self._run_query(ctx, req, False)

    def query_all(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        return self._run_query(ctx, req, True)

    def _more(self, ctx: Ctx, req: Request, token: str, all_rows: bool) -> Reply:
        batch = batch_size_from(req.headers.get("sforce-query-options"))
        return Reply(
            200, self.queries.more(token, batch_size=batch, version=ctx.version, all_rows=all_rows)
        )

    def query_more(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        return self._more(ctx, req, g[0], False)

    def query_all_more(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        return self._more(ctx, req, g[0], True)

    # -- sObject collections ----------------------------------------------------------------

    def _collection_body(self, req: Request) -> tuple[bool, list[Any]]:
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise DmlError.one(
                "JSON_PARSER_ERROR", "The request body must be an object with a records list"
            )
        records = body["records"]
        if len(records) > MAX_COLLECTION:
            raise DmlError.one(
                "EXCEEDED_ID_LIMIT",
                _LIMIT_TEXT,
            )
        return bool(body.get("allOrNone", False)), records

    def _collection(
        self,
        all_or_none: bool,
        items: list[Any],
        op: Callable[[Any], dict[str, Any]],
        *,
        keep_ids: bool = True,
    ) -> Reply:
        """Run op per item; with allOrNone, any failure rolls every write back."""
        results: list[dict[str, Any]] = []
        state = self.state
        with state.transaction() as tx:
            for item in items:
                try:
                    results.append(op(item))
                except DmlError as exc:
                    results.append(_failure(exc, item))
                except MultipleMatches as exc:
                    results.append(
                        {
                            "success": False,
                            "errors": [
                                {
                                    "statusCode": "DUPLICATE_EXTERNAL_ID",
                                    "message": "more than one record found for external id field: "
                                    + str([u.rsplit("/", 1)[1] for u in exc.urls]),
                                    "fields": [],
                                }
                            ],
                        }  # fmt: skip
                    )
            if all_or_none and any(not r["success"] for r in results):
                tx.rollback()
                rolled = {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were valid and the "
                    "request was using AllOrNone header",
                    "fields": [],
                }
                for i, r in enumerate(results):
                    if r["success"]:
                        # A rolled-back insert has no id any more; an update or delete keeps it.
                        undone: dict[str, Any] = {"success": False, "errors": [rolled]}
                        if keep_ids and not r.get("created"):
                            undone = {"id": r["id"], **undone}
                        if "created" in r:
                            undone["created"] = False
                        results[i] = undone
        return Reply(200, results)

    def collection_create(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        all_or_none, records = self._collection_body(req)

        def op(item: Any) -> dict[str, Any]:
            sobject, body = _typed(item)
            if "Id" in body:
                raise DmlError.one(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    "Record ID: cannot specify Id in an insert call",
                    ["Id"],
                )
            return {"id": dml.create(ctx, sobject, body), "success": True, "errors": []}

        return self._collection(all_or_none, records, op, keep_ids=False)

    def collection_update(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        all_or_none, records = self._collection_body(req)

        def op(item: Any) -> dict[str, Any]:
            sobject, body = _typed(item)
            # Field names are case-insensitive: the guide's example and jsforce send "id".
            rid = None
            for key in [k for k in body if k.lower() == "id"]:
                rid = body.pop(key) or rid
            if not rid:
                raise DmlError.one("MISSING_ARGUMENT", "Id not specified in an update call")
            norm = ids.normalize(str(rid))
            if norm is None:
                raise DmlError.one("MALFORMED_ID", f"malformed id {rid}", ["Id"])
            try:
                return {"id": dml.update(ctx, sobject, norm, body), "success": True, "errors": []}
            except DmlError as exc:
                exc.errors = [dict(e, id=norm) for e in exc.errors]
                raise

        return self._collection(all_or_none, records, op)

    def collection_delete(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        raw = [i for i in req.query.get("ids", "").split(",") if i]
        if not raw:
            raise DmlError.one("MISSING_ARGUMENT", "ids parameter is required")
        if len(raw) > MAX_COLLECTION:
            raise DmlError.one(
                "EXCEEDED_ID_LIMIT",
                _LIMIT_TEXT,
            )
        all_or_none = req.query.get("allOrNone", "false").lower() == "true"

        def op(rid: str) -> dict[str, Any]:
            norm = ids.normalize(rid)
            if norm is None:
                raise DmlError.one("MALFORMED_ID", f"malformed id {rid}")
            found = self.state.find(norm)
            if found is None:
                raise DmlError.one("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            try:
                dml.delete(ctx, found[0], norm)
            except DmlError as exc:
                exc.errors = [dict(e, id=norm) for e in exc.errors]
                raise
            return {"id": norm, "success": True, "errors": []}

        return self._collection(all_or_none, raw, op)

    def collection_retrieve(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        o = self._object(g[0])
        source = req.body if req.method == "POST" and isinstance(req.body, dict) else req.query
        raw_ids: Any = source.get("ids", [])
        raw_fields: Any = source.get("fields", [])
        id_list = raw_ids.split(",") if isinstance(raw_ids, str) else list(raw_ids)
        field_text = raw_fields if isinstance(raw_fields, str) else ",".join(raw_fields)
        fields = self._field_list(o, field_text)
        if not id_list or fields is None:
            raise DmlError.one("MISSING_ARGUMENT", "ids and fields are required")
        out: list[Any] = []
        for rid in id_list:
            norm = ids.normalize(rid.strip())
            rec = self.state.get(o.name, norm) if norm else None
            out.append(dml.present(o, rec, ctx.version, fields) if rec else None)
        return Reply(200, out)

    def collection_upsert(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        all_or_none, records = self._collection_body(req)
        o = self._object(g[0])
        fd = self._external(o, g[1])

        def op(item: Any) -> dict[str, Any]:
            sobject, body = _typed(item)
            value = next((v for k, v in body.items() if k.lower() == fd.name.lower()), None)
            if value is None and fd.name == "Id":
                # Upsert on Id with no Id inserts (recorded from a real org).
                fields = {k: v for k, v in body.items() if k.lower() != "id"}
                rid = dml.create(ctx, sobject or o.name, fields)
                return {"id": rid, "success": True, "errors": [], "created": True}
            if value is None:
                raise DmlError.one("MISSING_ARGUMENT", f"{fd.name} not specified", [fd.name])
            created, rid = dml.upsert(ctx, sobject or o.name, fd.name, str(value), body)
            return {"id": rid, "success": True, "errors": [], "created": created}

        return self._collection(all_or_none, records, op)

    # -- composite --------------------------------------------------------------------------

    def composite(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        body = req.body
        if not isinstance(body, dict) or not isinstance(body.get("compositeRequest"), list):
            raise DmlError.one("JSON_PARSER_ERROR", "compositeRequest is required")
        subs = body["compositeRequest"]
        if len(subs) > MAX_COMPOSITE:
            raise DmlError.one(
                "INVALID_BATCH_REQUEST",
                f"Composite request cannot contain more than {MAX_COMPOSITE} subrequests",
            )
        urls = [str(s.get("url")) for s in subs if isinstance(s, dict)]
        if sum(bool(_HEAVY_SUBREQUEST.match(u)) for u in urls) > MAX_COMPOSITE_HEAVY:
            raise DmlError.one(
                "INVALID_BATCH_REQUEST",
                f"Composite request cannot contain more than {MAX_COMPOSITE_HEAVY} sObject "
                "Collections or query subrequests",
            )
        all_or_none = bool(body.get("allOrNone", False))
        return Reply(
            200, {"compositeResponse": self.run_composite(ctx, subs, all_or_none, collections=True)}
        )

    def run_composite(
        self, ctx: Ctx, subs: list[Any], all_or_none: bool, *, collections: bool = False
    ) -> list[dict[str, Any]]:
        """Subrequests in one transaction, later ones referring to earlier results; with
        allOrNone a failure rolls all back (composite, and each graph of composite/graph).
        `collections`: sObject Collections subrequests are allowed (composite takes them;
        a graph's nodes are sObject rows only)."""
        results: list[dict[str, Any]] = []
        refs: dict[str, Any] = {}
        failed = False
        with self.state.transaction() as tx:
            for sub in subs:
                if not isinstance(sub, dict):
                    raise DmlError.one("JSON_PARSER_ERROR", "each subrequest must be an object")
                ref_id = str(sub.get("referenceId", ""))
                if failed and all_or_none:
                    results.append(_halted(ref_id))
                    continue
                try:
                    url = _substitute(sub.get("url", ""), refs)
                    sub_body = _substitute(sub.get("body"), refs)
                except KeyError as exc:
                    results.append(
                        {
                            "body": [
                                {
                                    "errorCode": "PROCESSING_HALTED",
                                    "message": f"Invalid reference specified. No value for "
                                    f"{exc.args[0]} found in {ref_id}. Provided referenceId "
                                    f"('{ref_id}') must start with a letter or a number, and "
                                    "it can contain only letters, numbers and underscores "
                                    "('_').",
                                }
                            ],  # fmt: skip
                            "httpHeaders": {},
                            "httpStatusCode": 400,
                            "referenceId": ref_id,
                        }
                    )
                    failed = True
                    continue
                reply = self._subrequest(
                    ctx, str(sub.get("method", "GET")).upper(), url, sub_body, collections
                )
                results.append(
                    {
                        "body": reply.body,
                        "httpHeaders": reply.headers,
                        "httpStatusCode": reply.status,
                        "referenceId": ref_id,
                    }
                )
                if reply.status >= 400:
                    failed = True
                elif ref_id:
                    refs[ref_id] = reply.body
            if failed and all_or_none:
                tx.rollback()
                for i, r in enumerate(results):
                    if r["httpStatusCode"] < 400:
                        results[i] = _halted(r["referenceId"])
        return results

    def _subrequest(
        self, ctx: Ctx, method: str, url: str, body: Any, collections: bool = False
    ) -> Reply:
        path, _, qs = url.partition("?")
        m = _VERSION_RE.match(path)
        if m is None or not MIN_VERSION <= float(m.group(1)) <= float(LATEST_API_VERSION):
            return not_found()
        from urllib.parse import parse_qsl

        sub_ctx = Ctx(ctx.server, ctx.user, m.group(1))
        req = Request(method, m.group(2) or "/", dict(parse_qsl(qs)), body, {})
        nested = req.path.startswith("/composite")
        if nested and not (collections and req.path.startswith("/composite/sobjects")):
            return error_reply(
                400, "INVALID_BATCH_REQUEST", "composite subrequests cannot be nested"
            )
        reply, _endpoint = self.dispatch(sub_ctx, req)
        if reply.status == 201 and isinstance(reply.body, dict) and reply.body.get("id"):
            reply.headers.setdefault("Location", f"{path}/{reply.body['id']}")
        return reply

    # -- limits -----------------------------------------------------------------------------

    def record_count(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        """Record Count: live records per object (`?sObjects=A,B`; objects without records are
        left out, as recorded from a real org)."""
        wanted = [n for n in req.query.get("sObjects", "").split(",") if n.strip()]
        names = [self._object(n.strip()).name for n in wanted] or list(self.schema.objects)
        counts = [(n, sum(1 for _ in self.state.records(n))) for n in names]
        return Reply(200, {"sObjects": [{"count": c, "name": n} for n, c in counts if c]})

    def limits(self, ctx: Ctx, req: Request, g: list[str]) -> Reply:
        used = self.state.api_usage
        cap = self.state.daily_api_limit

        def limit(mx: int, remaining: int | None = None) -> dict[str, int]:
            return {"Max": mx, "Remaining": mx if remaining is None else remaining}

        return Reply(
            200,
            {
                "DailyApiRequests": limit(cap, max(0, cap - used)),
                "DailyAsyncApexExecutions": limit(250000),
                "DailyBulkApiBatches": limit(15000),
                "DailyBulkV2QueryJobs": limit(10000),
                "DailyDurableStreamingApiEvents": limit(10000),
                "DailyGenericStreamingApiEvents": limit(10000),
                "DailyStreamingApiEvents": limit(10000),
                "DataStorageMB": limit(5),
                "FileStorageMB": limit(20),
                "HourlyPublishedStandardVolumePlatformEvents": limit(100000),
                "SingleEmail": limit(15),
                "StreamingApiConcurrentClients": limit(20),
                "DurableStreamingApiConcurrentClients": limit(20),
            },
        )


def _typed(item: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise DmlError.one("JSON_PARSER_ERROR", "each record must be a JSON object")
    attrs = item.get("attributes")
    sobject = attrs.get("type") if isinstance(attrs, dict) else None
    if not sobject:
        raise DmlError.one("INVALID_TYPE", "Must send a concrete entity type.")
    body = {k: v for k, v in item.items() if k != "attributes"}
    return str(sobject), body


def _failure(exc: DmlError, item: Any) -> dict[str, Any]:
    """A collection result for a failed record: errors use statusCode, not errorCode."""
    errors = [
        {"statusCode": e["errorCode"], "message": e["message"], "fields": e.get("fields", [])}
        for e in exc.errors
    ]
    out: dict[str, Any] = {"success": False, "errors": errors}
    rid = exc.errors[0].get("id") if exc.errors else None
    if rid:
        out = {"id": rid, **out}
    return out


def _halted(ref_id: str) -> dict[str, Any]:
    return {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in the same "
                "transaction failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref_id,
    }


def _lookup_ref(refs: dict[str, Any], name: str, path: str) -> Any:
    if name not in refs:
        raise KeyError(f"{name}{path}")
    value = refs[name]
    for key, index in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        try:
            value = value[key] if key else value[int(index)]
        except (KeyError, IndexError, TypeError):
            raise KeyError(f"{name}{path}") from None
    return value


def _substitute(value: Any, refs: dict[str, Any]) -> Any:
    """Replace @{ref.path} references with results of earlier subrequests."""
    if isinstance(value, str):
        whole = _REF_RE.fullmatch(value)
        if whole:
            return _lookup_ref(refs, whole.group(1), whole.group(2))
        return _REF_RE.sub(lambda m: str(_lookup_ref(refs, m.group(1), m.group(2))), value)
    if isinstance(value, list):
        return [_substitute(v, refs) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, refs) for k, v in value.items()}
    return value


def setup(app: web.Application, server: DevOrgServer) -> None:
    api = RestApi(server)
    server.rest = api
    app.router.add_get("/services/data", api.versions)
    app.router.add_get("/services/data/", api.versions)
    app.router.add_route("*", "/services/data/{tail:.+}", api.handle)
