"""Running SOQL against the org: resolve fields against describe, filter, sort, page.

Results are materialized when the query runs (Salesforce's query cursor is a snapshot too) and
served in batches through `query/{locator}-{offset}`.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bridge.devorg import ids, soql
from bridge.devorg.schema import CHILD_RELATIONSHIPS, FieldDef, ObjectDef
from bridge.devorg.soql import Comparison, Query, SoqlError

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer

DEFAULT_BATCH = 2000
MIN_BATCH = 200
MAX_CURSORS = 200  # open query locators kept; Salesforce keeps 10 per user


@dataclass
class Path:
    """A resolved field path: relationship hops (reference fields) then the final field."""

    hops: list[FieldDef]
    field: FieldDef
    canonical: str  # e.g. "Account.Name"


@dataclass
class ChildQuery:
    name: str  # the child relationship name, e.g. "Contacts"
    field: str  # the child's reference field to the parent, e.g. "AccountId"
    compiled: Compiled


@dataclass
class Compiled:
    q: Query
    o: ObjectDef
    paths: list[Path]
    children: list[ChildQuery]


@dataclass
class Cursor:
    rows: list[dict[str, Any]]
    total: int
    user_id: str


def _no_such_column(q: Query, ref: soql.FieldRef, name: str, entity: str) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"\n{q.text}\n{' ' * ref.pos}^\nERROR at Row:1:Column:{ref.pos + 1}\n"
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference your "
        "WSDL or the describe call for the appropriate names.",
    )


class QueryEngine:
    def __init__(self, server: DevOrgServer) -> None:
        self.server = server
        self.schema = server.schema
        self.state = server.state
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()

    def reset(self) -> None:
        self.cursors.clear()

    # -- resolution -------------------------------------------------------------------------

    def resolve(self, q: Query, o: ObjectDef, ref: soql.FieldRef) -> Path:
        parts = ref.path.split(".")
        # "Lead.Email" (the object's own name as a prefix) is allowed in SOQL.
        if len(parts) > 1 and parts[0].lower() == o.name.lower() and o.field(parts[0]) is None:
            parts = parts[1:]
        hops: list[FieldDef] = []
        current = o
        names = []
        for part in parts[:-1]:
            rel = current.relationships.get(part.lower())
            if rel is None:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * ref.pos}^\nERROR at Row:1:Column:{ref.pos + 1}\n"
                    f"Didn't understand relationship '{part}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                )
            target = next(
                (self.schema.objects[t] for t in rel.reference_to if t in self.schema.objects),
                None,
            )
            if target is None:
                raise _no_such_column(q, ref, part, current.name)
            hops.append(rel)
            names.append(rel.relationship_name or part)
            current = target
        fd = current.field(parts[-1])
        if fd is None and hops and len(hops[-1].reference_to) > 1:
            # Polymorphic relationship (Who, What, Owner): any of its targets may have it.
            for t in hops[-1].reference_to:
                other = self.schema.objects.get(t)
                if other is not None and other.field(parts[-1]) is not None:
                    fd = other.field(parts[-1])
                    break
        if fd is None:
            raise _no_such_column(q, ref, parts[-1], current.name)
        names.append(fd.name)
        return Path(hops, fd, ".".join(names))

    def _object_of(self, q: Query) -> ObjectDef:
        o = self.schema.object(q.sobject)
        if o is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"\n{q.text}\n{' ' * q.sobject_pos}^\nERROR at Row:1:Column:{q.sobject_pos + 1}\n"
                f"sObject type '{q.sobject}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        return o

    def compile(self, text: str, *, all_rows: bool = False) -> Compiled:
        q = soql.parse_query(text)
        return self._compile(q, self._object_of(q), all_rows)

    def _child(self, parent: ObjectDef, sub: Query, all_rows: bool) -> ChildQuery:
        """A child relationship subquery: `(SELECT … FROM Contacts)` on Account."""
        for (child_name, field_name), rel in CHILD_RELATIONSHIPS.items():
            child = self.schema.objects.get(child_name)
            if child is None or rel.lower() != sub.sobject.lower():
                continue
            fd = child.fields.get(field_name)
            if fd is not None and parent.name in fd.reference_to:
                return ChildQuery(rel, field_name, self._compile(sub, child, all_rows))
        raise SoqlError(
            "INVALID_TYPE",
            f"\n{sub.text}\n{' ' * sub.sobject_pos}^\nERROR at Row:1:Column:"
            f"{sub.sobject_pos + 1}\nDidn't understand relationship '{sub.sobject}' in FROM part "
            "of query call. If you are attempting to use a custom relationship, be sure to "
            "append the '__r' after the custom relationship name. Please reference your WSDL or "
            "the describe call for the appropriate names.",
        )

    def _semi_join(self, cmp: Comparison, all_rows: bool) -> None:
        """Replace `IN (SELECT X FROM …)` by the values the inner query selects."""
        values = cmp.value if isinstance(cmp.value, list) else [cmp.value]
        if not (len(values) == 1 and isinstance(values[0], soql.SemiJoin)):
            return
        inner = values[0].query
        compiled = self._compile(inner, self._object_of(inner), False)
        if len(compiled.paths) != 1 or compiled.paths[0].field.type not in ("id", "reference"):
            raise SoqlError(
                "MALFORMED_QUERY",
                "The selected field in a semi join subquery must be an ID or reference field",
            )
        rows = self._select(compiled, self.state.records(compiled.o.name), False)
        path = compiled.paths[0].canonical
        found = (self._value(r, path) for r in rows)
        cmp.value = list(dict.fromkeys(v for v in found if v is not None))

    def _compile(self, q: Query, o: ObjectDef, all_rows: bool) -> Compiled:
        children = [self._child(o, sub, all_rows) for sub in q.subqueries]
        if q.field_sets:
            # FIELDS(ALL|CUSTOM) are the bounded forms: LIMIT 200 at most.
            if any(fs != "STANDARD" for fs in q.field_sets) and (q.limit is None or q.limit > 200):
                raise SoqlError(
                    "MALFORMED_QUERY",
                    "The SOQL FIELDS function must have a LIMIT of at most 200",
                )
            named = {f.path.lower() for f in q.fields}
            for which in q.field_sets:
                for fd in o.fields.values():
                    wanted = which == "ALL" or (which == "CUSTOM") == fd.custom
                    if wanted and fd.name.lower() not in named:
                        q.fields.append(soql.FieldRef(fd.name, q.sobject_pos))
                        named.add(fd.name.lower())
        for agg in q.aggregates:
            agg.field.path = self.resolve(q, o, agg.field).canonical
        paths: list[Path] = []
        seen: set[str] = set()
        for ref in q.fields:
            p = self.resolve(q, o, ref)
            if p.canonical.lower() in seen:
                raise SoqlError("INVALID_FIELD", f"duplicate field selected: {p.canonical}")
            seen.add(p.canonical.lower())
            paths.append(p)
        for cmp in soql.iter_comparisons(q.where):
            self._semi_join(cmp, all_rows)
            p = self.resolve(q, o, cmp.field)
            if p.field.type == "textarea" and p.field.length > 255:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * cmp.field.pos}^\nERROR at Row:1:Column:"
                    f"{cmp.field.pos + 1}\nfield '{p.field.name}' can not be filtered in query "
                    "call",
                )
            cmp.field.path = p.canonical
            self._check_values(q, cmp, p.field)
        for item in q.order_by:
            p = self.resolve(q, o, item.field)
            if p.field.type == "textarea" and p.field.length > 255:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * item.field.pos}^\nERROR at Row:1:Column:"
                    f"{item.field.pos + 1}\nfield '{p.field.name}' can not be sorted in a query "
                    "call",
                )
            item.field.path = p.canonical
        return Compiled(q, o, paths, children)

    def _check_values(self, q: Query, cmp: Comparison, fd: FieldDef) -> None:
        values = cmp.value if isinstance(cmp.value, list) else [cmp.value]
        fixed = []
        for v in values:
            if fd.type in ("id", "reference") and isinstance(v, str):
                rid = ids.normalize(v)
                if rid is None:
                    raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {v}")
                v = rid
            wrong_temporal = (
                fd.type == "datetime" and isinstance(v, date) and not isinstance(v, datetime)
            ) or (fd.type == "date" and isinstance(v, datetime))
            if fd.type in ("date", "datetime") and (isinstance(v, str) or wrong_temporal):
                kind = "dateTime" if fd.type == "datetime" else "date"
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * cmp.field.pos}^\nERROR at Row:1:Column:"
                    f"{cmp.field.pos + 1}\nvalue of filter criterion for field '{fd.name}' must "
                    f"be of type {kind} and should not be enclosed in quotes",
                )
            if fd.type == "boolean" and v is not None and not isinstance(v, bool):
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * cmp.field.pos}^\nERROR at Row:1:Column:"
                    f"{cmp.field.pos + 1}\nvalue of filter criterion for field '{fd.name}' must "
                    "be of type boolean and should not be enclosed in quotes",
                )
            if cmp.op == "LIKE" and fd.type not in (
                "string", "email", "phone", "url", "picklist", "combobox", "textarea", "id",
                "reference", "multipicklist",
            ):  # fmt: skip
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * cmp.field.pos}^\nERROR at Row:1:Column:"
                    f"{cmp.field.pos + 1}\ninvalid operator on {fd.type} field",
                )
            fixed.append(v)
        cmp.value = fixed if isinstance(cmp.value, list) else fixed[0]

    # -- execution --------------------------------------------------------------------------

    def _value(self, rec: dict[str, Any], path: str) -> Any:
        if "." not in path:
            return rec.get(path)
        cur: dict[str, Any] | None = rec
        parts = path.split(".")
        for rel_name in parts[:-1]:
            assert cur is not None
            ref_id = self._ref_id(cur, rel_name)
            cur = self._parent(ref_id)
            if cur is None:
                return None
        return cur.get(parts[-1]) if cur is not None else None

    @staticmethod
    def _ref_id(rec: dict[str, Any], rel_name: str) -> str | None:
        if rel_name.endswith("__r"):
            return rec.get(rel_name[:-3] + "__c")
        return rec.get(rel_name + "Id")

    def _parent(self, ref_id: str | None) -> dict[str, Any] | None:
        if not ref_id:
            return None
        found = self.state.find(ref_id)
        if found is None or found[1].get("IsDeleted"):
            return None
        return found[1]

    def _candidates(self, q: Query, o: ObjectDef, all_rows: bool) -> list[dict[str, Any]]:
        where = q.where
        # Id = 'x' / Id IN (...): straight to the records (the common lookup shape).
        if isinstance(where, Comparison) and where.field.path == "Id" and where.op in ("=", "IN"):
            wanted = where.value if isinstance(where.value, list) else [where.value]
            out = []
            # A repeated id (or the semi-join's many children of one parent) is one record.
            for rid in dict.fromkeys(wanted):
                rec = self.state.get(o.name, rid, include_deleted=all_rows) if rid else None
                if rec is not None:
                    out.append(rec)
            return out
        if (
            isinstance(where, Comparison)
            and where.op == "="
            and "." not in where.field.path
            and isinstance(where.value, str)
            and not all_rows
        ):
            hits = self.state.lookup(o.name, where.field.path, where.value)
            if hits is not None:
                return [r for r in (self.state.get(o.name, i) for i in hits) if r is not None]
        return list(self.state.records(o.name, include_deleted=all_rows))

    def _select(
        self, c: Compiled, source: Iterable[dict[str, Any]], all_rows: bool
    ) -> list[dict[str, Any]]:
        """The records of `source` that the query selects, in its order, offset and limit."""
        q = c.q
        now = self.state.clock.now()
        rows = [r for r in source if soql.evaluate_where(q.where, r, now=now, resolve=self._value)]
        if q.order_by:
            for item in reversed(q.order_by):
                path = item.field.path
                present = [r for r in rows if self._value(r, path) is not None]
                nulls = [r for r in rows if self._value(r, path) is None]
                keys = {id(r): _sort_key(self._value(r, path)) for r in present}
                present.sort(key=lambda r: keys[id(r)], reverse=item.descending)
                rows = present + nulls if item.nulls_last else nulls + present
        if q.offset:
            rows = rows[q.offset :]
        if q.limit is not None:
            rows = rows[: q.limit]
        return rows

    def run(
        self, text: str, *, all_rows: bool, batch_size: int, user_id: str, version: str
    ) -> dict[str, Any]:
        c = self.compile(text, all_rows=all_rows)
        rows = self._select(c, self._candidates(c.q, c.o, all_rows), all_rows)
        if c.q.count:
            return {"totalSize": len(rows), "done": True, "records": []}
        if c.q.aggregates:
            row: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for n, agg in enumerate(c.q.aggregates):
                values = [self._value(r, agg.field.path) for r in rows]
                row[agg.alias or f"expr{n}"] = sum(v is not None for v in values)
            return {"totalSize": 1, "done": True, "records": [row]}
        shaped = [self._shape(c.o, r, c.paths, version) for r in rows]
        for child in c.children:
            by_parent: dict[str, list[dict[str, Any]]] = {}
            for r in self.state.records(child.compiled.o.name, include_deleted=all_rows):
                parent_id = r.get(child.field)
                if parent_id:
                    by_parent.setdefault(parent_id, []).append(r)
            for row, out in zip(rows, shaped, strict=True):
                kids = self._select(child.compiled, by_parent.get(row["Id"], []), all_rows)
                out[child.name] = (
                    {
                        "totalSize": len(kids),
                        "done": True,
                        "records": [
                            self._shape(child.compiled.o, k, child.compiled.paths, version)
                            for k in kids
                        ],
                    }
                    if kids
                    else None
                )
        return self._page(shaped, batch_size, user_id, version, all_rows)

    def _shape(
        self, o: ObjectDef, rec: dict[str, Any], paths: list[Path], version: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": o.name,
                "url": f"/services/data/v{version}/sobjects/{o.name}/{rec['Id']}",
            }
        }
        for p in paths:
            if not p.hops:
                out[p.field.name] = rec.get(p.field.name)
                continue
            node: dict[str, Any] | None = out
            src: dict[str, Any] | None = rec
            for hop in p.hops:
                assert node is not None
                rel = hop.relationship_name or hop.name
                parent = self._parent(src.get(hop.name)) if src is not None else None
                if parent is None:
                    node.setdefault(rel, None)
                    node = None
                    break
                existing = node.get(rel)
                if existing is None:
                    parent_type = self.schema.sobject_for_prefix(parent["Id"][:3]) or ""
                    url = f"/services/data/v{version}/sobjects/{parent_type}/{parent['Id']}"
                    existing = {"attributes": {"type": parent_type, "url": url}}
                    node[rel] = existing
                node = existing
                src = parent
            if node is not None and src is not None:
                node[p.field.name] = src.get(p.field.name)
        return out

    def _page(
        self,
        rows: list[dict[str, Any]],
        batch_size: int,
        user_id: str,
        version: str,
        all_rows: bool,
    ) -> dict[str, Any]:
        total = len(rows)
        if total <= batch_size:
            return {"totalSize": total, "done": True, "records": rows}
        locator = "01g" + secrets.token_hex(8)[:12].upper() + "AAA"
        self.cursors[locator] = Cursor(rows, total, user_id)
        while len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return self._batch(locator, 0, batch_size, version, all_rows)

    def _batch(
        self, locator: str, offset: int, batch_size: int, version: str, all_rows: bool
    ) -> dict[str, Any]:
        cursor = self.cursors[locator]
        chunk = cursor.rows[offset : offset + batch_size]
        nxt = offset + len(chunk)
        out: dict[str, Any] = {
            "totalSize": cursor.total,
            "done": nxt >= cursor.total,
            "records": chunk,
        }
        if nxt < cursor.total:
            kind = "queryAll" if all_rows else "query"
            out["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{locator}-{nxt}"
        else:
            del self.cursors[locator]
        return out

    def more(self, token: str, *, batch_size: int, version: str, all_rows: bool) -> dict[str, Any]:
        locator, _, offset_text = token.partition("-")
        cursor = self.cursors.get(locator)
        if cursor is None or not offset_text.isdigit() or int(offset_text) > cursor.total:
            raise SoqlError("INVALID_QUERY_LOCATOR", "invalid query locator")
        self.cursors.move_to_end(locator)
        return self._batch(locator, int(offset_text), batch_size, version, all_rows)


def _sort_key(value: Any) -> Any:
    if isinstance(value, str):
        return (1, value.lower())
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    return (2, str(value))


def batch_size_from(header: str | None) -> int:
    """Sforce-Query-Options: batchSize=N (200..2000; Salesforce treats it as a hint)."""
    if not header:
        return DEFAULT_BATCH
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            return max(MIN_BATCH, min(DEFAULT_BATCH, int(value.strip())))
    return DEFAULT_BATCH
