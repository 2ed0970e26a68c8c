"""composite/tree, composite/batch and composite/graph of the local org's REST API.

Built on the REST router (`RestApi.dispatch` runs every subrequest through the same handlers as
a top-level request) and on `RestApi.run_composite` (a graph is a composite with allOrNone).
Follows the REST API Developer Guide: sObject Tree (and its request / response bodies),
Composite Batch (Batch Request Body: haltOnError, 412 BATCH_PROCESSING_HALTED), Composite Graph
and Composite Graph Limits.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bridge.devorg import dml
from bridge.devorg.dml import Ctx, DmlError
from bridge.devorg.replies import Reply, Request, error_reply
from bridge.devorg.schema import ObjectDef

if TYPE_CHECKING:
    from bridge.devorg.rest import RestApi

MAX_TREE_RECORDS = 200  # across all trees
MAX_TREE_TYPES = 5
MAX_TREE_DEPTH = 5
MAX_BATCH = 25
MAX_GRAPHS = 75
MAX_GRAPH_NODES = 500  # per graph, and per request
MAX_GRAPH_DEPTH = 15
MAX_NODE_KINDS = 15  # different (version, method, object) per request
MAX_GRAPH_FAILURES = 14
_REFERENCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
_GRAPH_NODE = re.compile(r"^/services/data/v(\d{2,3}\.\d)/sobjects/([^/?]+)(/[^/?]+)?(/[^?]+)?")
_REFERENCES = re.compile(r"@\{([A-Za-z0-9_]+)")


def register(api: RestApi) -> None:
    api._route(r"/composite/tree/([^/]+)/?", {"POST": lambda c, r, g: tree(api, c, r, g)},
               "composite/tree/{o}")  # fmt: skip
    api._route(r"/composite/batch/?", {"POST": lambda c, r, g: batch(api, c, r, g)},
               "composite/batch")  # fmt: skip
    api._route(r"/composite/graph/?", {"POST": lambda c, r, g: graph(api, c, r, g)},
               "composite/graph")  # fmt: skip


def _limit(message: str) -> DmlError:
    return DmlError.one("LIMIT_EXCEEDED", message)


# ---- sObject Tree ----------------------------------------------------------------------------


class _Node:
    def __init__(
        self, ref: str, o: ObjectDef, body: dict[str, Any], level: int, parent: _Node | None,
        link: str | None,
    ) -> None:  # fmt: skip
        self.ref, self.o, self.body, self.level = ref, o, body, level
        self.parent, self.link = parent, link  # link: the child's reference field to its parent
        self.id: str | None = None


def _tree_errors(problems: list[tuple[str, str, str]]) -> Reply:

    results = [
        {"referenceId": ref, "errors": [{"statusCode": code, "message": message, "fields": []}]}
        for ref, code, message in problems
    ]
    return Reply(400, {"hasErrors": True, "results": results})


def tree(api: RestApi, ctx: Ctx, req: Request, g: list[str]) -> Reply:
    """Create record trees (parents with their children) all or none: roots first, then each
    level's records type by type; 201 with every referenceId's new id."""

    root_type = api._object(g[0])
    body = req.body
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise DmlError.one("JSON_PARSER_ERROR", "The request body must have a records list")
    nodes: list[_Node] = []
    problems: list[tuple[str, str, str]] = []

    def walk(items: list[Any], o: ObjectDef, level: int, parent: _Node | None,
             link: str | None) -> None:  # fmt: skip
        for item in items:
            if not isinstance(item, dict):
                raise DmlError.one("JSON_PARSER_ERROR", "each record must be a JSON object")
            attrs: dict[str, Any] = item.get("attributes") or {}
            if not isinstance(attrs, dict):
                attrs = {}
            ref = str(attrs.get("referenceId") or "")
            kind = str(attrs.get("type") or "")
            if not _REFERENCE_ID.match(ref):
                problems.append((ref, "INVALID_INPUT", "Provided referenceId must start with a "
                                 "letter or a number, and it can contain only letters, numbers "
                                 "and underscores ('_')."))  # fmt: skip
                continue
            if api.schema.object(kind) is not o:
                problems.append((ref, "INVALID_INPUT", f"The type of the record ('{kind}') must "
                                 f"be {o.name}"))  # fmt: skip
                continue
            fields: dict[str, Any] = {}
            children: list[tuple[str, list[Any]]] = []
            for key, value in item.items():
                if key == "attributes":
                    continue
                if isinstance(value, dict) and isinstance(value.get("records"), list):
                    children.append((key, value["records"]))
                else:
                    fields[key] = value
            node = _Node(ref, o, fields, level, parent, link)
            nodes.append(node)
            for relationship, records in children:
                found = _child_relationship(api, o, relationship)
                if found is None:
                    problems.append((ref, "INVALID_FIELD", f"No such column '{relationship}' on "
                                     f"sobject of type {o.name}"))  # fmt: skip
                    continue
                walk(records, found[0], level + 1, node, found[1])

    walk(body["records"], root_type, 1, None, None)
    if len(nodes) > MAX_TREE_RECORDS:
        raise _limit(f"An sObject tree request can create at most {MAX_TREE_RECORDS} records")
    if len({n.o.name for n in nodes}) > MAX_TREE_TYPES:
        raise _limit(f"An sObject tree request can create records of at most {MAX_TREE_TYPES} "
                     "types")  # fmt: skip
    if any(n.level > MAX_TREE_DEPTH for n in nodes):
        raise _limit(f"An sObject tree can be at most {MAX_TREE_DEPTH} levels deep")
    seen: dict[str, int] = {}
    for n in nodes:
        seen[n.ref.lower()] = seen.get(n.ref.lower(), 0) + 1
    problems += [
        (n.ref, "INVALID_INPUT", "Duplicate ReferenceId provided in the request")
        for n in nodes
        if seen[n.ref.lower()] > 1
    ]
    if problems:
        return _tree_errors(problems)
    with api.state.transaction() as tx:
        for node in _creation_order(nodes):
            fields = dict(node.body)
            if node.parent is not None and node.link is not None:
                fields[node.link] = node.parent.id
            try:
                node.id = dml.create(ctx, node.o.name, fields)
            except DmlError as exc:
                tx.rollback()
                errors = [
                    {"statusCode": e["errorCode"], "message": e["message"],
                     "fields": e.get("fields", [])}
                    for e in exc.errors
                ]  # fmt: skip
                return Reply(
                    400,
                    {"hasErrors": True, "results": [{"referenceId": node.ref, "errors": errors}]},
                )
    ordered = _creation_order(nodes)
    return Reply(
        201, {"hasErrors": False, "results": [{"referenceId": n.ref, "id": n.id} for n in ordered]}
    )


def _child_relationship(api: RestApi, parent: ObjectDef, name: str) -> tuple[ObjectDef, str] | None:
    """(child object, its reference field) of a child relationship name such as Contacts."""
    for (child_name, field_name), rel in api.schema.child_relationships.items():
        child = api.schema.objects.get(child_name)
        fd = child.fields.get(field_name) if child is not None else None
        if child and fd and rel.lower() == name.lower() and parent.name in fd.reference_to:
            return child, field_name
    return None


def _creation_order(nodes: list[_Node]) -> list[_Node]:
    """Roots across all trees, then each level's records grouped by type (first seen first)."""
    out: list[_Node] = []
    for level in sorted({n.level for n in nodes}):
        at = [n for n in nodes if n.level == level]
        types = list(dict.fromkeys(n.o.name for n in at))
        out += [n for t in types for n in at if n.o.name == t]
    return out


# ---- Composite Batch -------------------------------------------------------------------------

_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "HEAD")


def batch(api: RestApi, ctx: Ctx, req: Request, g: list[str]) -> Reply:
    """Up to 25 independent subrequests, each committed on its own and counted as an API call;
    with haltOnError the ones after a failure answer 412 BATCH_PROCESSING_HALTED."""

    body = req.body
    if not isinstance(body, dict) or not isinstance(body.get("batchRequests"), list):
        raise DmlError.one("JSON_PARSER_ERROR", "The request body must have a batchRequests list")
    subs = body["batchRequests"]
    if len(subs) > MAX_BATCH:
        raise DmlError.one(
            "INVALID_BATCH_REQUEST", f"A batch request can contain at most {MAX_BATCH} subrequests"
        )
    for sub in subs:  # the whole request is refused before anything runs
        ok = isinstance(sub, dict) and isinstance(sub.get("url"), str)
        if not ok or str(sub.get("method", "")).upper() not in _METHODS:
            raise DmlError.one("INVALID_BATCH_REQUEST", "Each subrequest needs a method and a url")
    halt = bool(body.get("haltOnError", False))
    results: list[dict[str, Any]] = []
    halted = has_errors = False
    for n, sub in enumerate(subs):
        if halted:
            results.append({"statusCode": 412, "result": [
                {"errorCode": "BATCH_PROCESSING_HALTED",
                 "message": "Batch processing halted per request"}]})  # fmt: skip
            continue
        url = sub["url"]
        if not url.startswith("/services/data/"):
            url = "/services/data/" + url.lstrip("/")  # the guide's form: v66.0/sobjects/...
        if n and not api.state.count_api_call():  # each subrequest is an API call
            reply = error_reply(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        else:
            reply = api._subrequest(ctx, sub["method"].upper(), url, sub.get("richInput"))
        results.append({"statusCode": reply.status, "result": reply.body})
        if reply.status >= 400:
            has_errors = True
            halted = halt
    return Reply(200, {"hasErrors": has_errors, "results": results})


# ---- Composite Graph -------------------------------------------------------------------------


def graph(api: RestApi, ctx: Ctx, req: Request, g: list[str]) -> Reply:
    """Graphs of sObject subrequests, each all or none in its own transaction."""

    body = req.body
    if not isinstance(body, dict) or not isinstance(body.get("graphs"), list):
        raise DmlError.one("JSON_PARSER_ERROR", "The request body must have a graphs list")
    graphs = body["graphs"]
    _check_graphs(graphs)
    out: list[dict[str, Any]] = []
    failures = 0
    for item in graphs:
        nodes = item["compositeRequest"]
        if failures > MAX_GRAPH_FAILURES:
            halted = [_halted_node(str(n.get("referenceId", ""))) for n in nodes]
            out.append({"graphId": item["graphId"], "isSuccessful": False,
                        "graphResponse": {"compositeResponse": halted}})  # fmt: skip
            continue
        results = api.run_composite(ctx, nodes, all_or_none=True)
        ok = all(r["httpStatusCode"] < 400 for r in results)
        failures += not ok
        out.append({"graphId": item["graphId"], "graphResponse": {"compositeResponse": results},
                    "isSuccessful": ok})  # fmt: skip
    return Reply(200, {"graphs": out})


def _halted_node(ref_id: str) -> dict[str, Any]:
    return {"body": [{"errorCode": "PROCESSING_HALTED", "message": "Processing of this graph "
                      "was halted: too many graphs of the request failed."}],
            "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref_id}  # fmt: skip


def _check_graphs(graphs: list[Any]) -> None:
    """The Composite Graph Limits, and the node URLs a graph may use (sObject rows only)."""
    if len(graphs) > MAX_GRAPHS:
        raise _limit(f"A composite graph request can contain at most {MAX_GRAPHS} graphs")
    ids: set[str] = set()
    kinds: set[tuple[str, str, str]] = set()
    total = 0
    for item in graphs:
        nodes = item.get("compositeRequest") if isinstance(item, dict) else None
        graph_id = str(item.get("graphId") or "") if isinstance(item, dict) else ""
        if not isinstance(nodes, list) or not nodes:
            raise DmlError.one("JSON_PARSER_ERROR", "Each graph needs a compositeRequest list")
        if not _REFERENCE_ID.match(graph_id) or len(graph_id) >= 40 or graph_id in ids:
            raise DmlError.one(
                "INVALID_INPUT", f"graphId '{graph_id}' must be unique, start with a letter or "
                "a number, use only letters, numbers and underscores, and be under 40 characters"
            )  # fmt: skip
        ids.add(graph_id)
        if len(nodes) > MAX_GRAPH_NODES:
            raise _limit(f"A graph can contain at most {MAX_GRAPH_NODES} nodes")
        total += len(nodes)
        depth: dict[str, int] = {}
        for node in nodes:
            if not isinstance(node, dict):
                raise DmlError.one("JSON_PARSER_ERROR", "each node must be an object")
            method = str(node.get("method", "")).upper()
            url = str(node.get("url", ""))
            m = _GRAPH_NODE.match(url)
            allowed: tuple[str, ...] = ("GET", "PATCH", "DELETE")
            if m and not m.group(3):
                allowed = ("POST",)  # sobjects/{o}: create
            elif m and m.group(4):
                allowed = ("GET", "PATCH", "DELETE", "POST")  # by external id
            if m is None or method not in allowed:
                raise DmlError.one(
                    "INVALID_INPUT", f"A graph node can only read or write sObject rows: "
                    f"{method} {url}"
                )  # fmt: skip
            kinds.add((m.group(1), method, m.group(2).lower()))
            used = _REFERENCES.findall(url + repr(node.get("body")))
            level = 1 + max((depth.get(r, 0) for r in used), default=0)
            depth[str(node.get("referenceId", ""))] = level
            if level > MAX_GRAPH_DEPTH:
                raise _limit(f"A graph can be at most {MAX_GRAPH_DEPTH} nodes deep")
    if total > MAX_GRAPH_NODES:
        raise _limit(f"A composite graph request can contain at most {MAX_GRAPH_NODES} nodes")
    if len(kinds) > MAX_NODE_KINDS:
        raise _limit(
            f"A composite graph request can use at most {MAX_NODE_KINDS} different kinds of node "
            "(API version, method and object)"
        )
