"""Running SOQL against the org: resolve fields against describe, filter, sort, page.

Results are materialized when the query runs (Salesforce's query cursor is a snapshot too) and
served in batches through `query/{locator}-{offset}`.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bridge.devorg import aggregate, ids, organization, soql
from bridge.devorg.schema import FieldDef, ObjectDef
from bridge.devorg.soql import Aggregate, Comparison, FieldRef, Query, SoqlError

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer

DEFAULT_BATCH = 2000
MIN_BATCH = 200
MAX_CURSORS = 200  # open query locators kept; Salesforce keeps 10 per user


# A polymorphic lookup (Who, What, a Lead's Owner) reaches the "Name" entity: these fields only
# (lower case -> API name); TYPEOF reaches the others. `Type` is the record's object name.
NAME_FIELDS = {
    n.lower(): n
    for n in (
        "Id", "Name", "FirstName", "LastName", "Type", "Alias", "Email", "Phone", "Title",
        "Username", "IsActive", "UserRoleId", "ProfileId", "RecordTypeId", "CommunityNickname",
        "NameOrAlias", "LastReferencedDate", "LastViewedDate", "SmallPhotoUrl",
        "MediumPhotoUrl", "FullPhotoUrl",
    )
}  # fmt: skip
POLY_TYPE = "$Type"  # canonical path part of a polymorphic lookup's Type (What.$Type)
SCOPES_OF_OWNED = ("everything", "mine")


@dataclass
class Path:
    """A resolved field path: relationship hops (reference fields) then the final field."""

    hops: list[FieldDef]
    field: FieldDef
    canonical: str  # e.g. "Account.Name"
    ref: FieldRef | None = None  # the SELECT item (functions, alias)

    @property
    def key(self) -> str:
        """The output key of a top-level column: its alias or the field's name."""
        return (self.ref.alias if self.ref is not None else None) or self.field.name


@dataclass
class TypeOfPlan:
    """A compiled TYPEOF: the lookup, then the fields to read per object type (or ELSE)."""

    lookup: FieldDef
    whens: dict[str, list[Path]]
    otherwise: list[Path] | None


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
    typeofs: list[TypeOfPlan] = field(default_factory=list)
    # canonical path (lower case) -> its field, for aggregate queries
    fields: dict[str, FieldDef] = field(default_factory=dict)


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


_SPELLING = {"TOLABEL": "toLabel", "CONVERTTIMEZONE": "convertTimezone"}


def _no_aggregate(q: Query, where: str) -> None:
    if q.is_aggregate or q.count:
        raise SoqlError("MALFORMED_QUERY", f"Aggregate functions are not allowed in {where}")


def _polymorphic(fd: FieldDef) -> bool:
    return len(fd.reference_to) > 1


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
            if rel is None or (hops and _polymorphic(hops[-1])):
                # (the Name entity a polymorphic lookup reaches has no relationships)
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
        fd: FieldDef | None
        if hops and _polymorphic(hops[-1]):
            fd = self._name_entity_field(q, ref, parts[-1])
        else:
            fd = current.field(parts[-1])
        if fd is None:
            raise _no_such_column(q, ref, parts[-1], current.name)
        poly_type = bool(hops) and _polymorphic(hops[-1]) and fd.name == "Type"
        names.append(POLY_TYPE if poly_type else fd.name)
        self._check_functions(q, ref, fd)
        return Path(hops, fd, ".".join(names), ref)

    def _name_entity_field(self, q: Query, ref: FieldRef, name: str) -> FieldDef:
        """A field of the Name entity (What.Name, Who.Email, What.Type)."""
        proper = NAME_FIELDS.get(name.lower())
        if proper is None:
            raise _no_such_column(q, ref, name, "Name")
        if proper == "Type":
            return FieldDef("Type", "picklist", label="Type", length=40)
        for target in self.schema.objects.values():
            fd = target.field(proper)
            if fd is not None and target.name in ("Lead", "Contact", "Account", "User"):
                return fd
        return FieldDef(proper, "string", label=proper, length=255)

    def _check_functions(self, q: Query, ref: FieldRef, fd: FieldDef) -> None:
        """Date functions take a date or dateTime (DAY_ONLY, HOUR_IN_DAY and convertTimezone a
        dateTime), toLabel a picklist, FORMAT a number, date or dateTime."""
        for fn in ref.functions:
            if fn in ("DAY_ONLY", "HOUR_IN_DAY", "CONVERTTIMEZONE"):
                ok = fd.type == "datetime"
            elif fn in soql.DATE_FUNCTIONS:
                ok = fd.type in ("date", "datetime")
            elif fn == "TOLABEL":
                ok = fd.type in ("picklist", "multipicklist", "combobox")
            else:  # FORMAT
                ok = fd.type in ("int", "double", "currency", "percent", "date", "datetime")
            if not ok:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * ref.pos}^\nERROR at Row:1:Column:{ref.pos + 1}\n"
                    f"{_SPELLING.get(fn, fn)}() can not be used on field '{fd.name}' of type "
                    f"{fd.type}",
                )

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
        _no_aggregate(sub, "a child relationship subquery")
        for (child_name, field_name), rel in self.schema.child_relationships.items():
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
        _no_aggregate(inner, "a semi-join subquery")
        compiled = self._compile(inner, self._object_of(inner), False)
        if len(compiled.paths) != 1 or compiled.paths[0].field.type not in ("id", "reference"):
            raise SoqlError(
                "MALFORMED_QUERY",
                "The selected field in a semi join subquery must be an ID or reference field",
            )
        rows = self._select(compiled, self._records(compiled.o, False), False)
        path = compiled.paths[0].canonical
        found = (self._value(r, path) for r in rows)
        cmp.value = list(dict.fromkeys(v for v in found if v is not None))

    def _compile(self, q: Query, o: ObjectDef, all_rows: bool) -> Compiled:
        self._check_scope(q, o)
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
            self._check_values(q, cmp, _after_functions(p.field, cmp.field.functions))
        if q.is_aggregate:
            return self._compile_aggregate(q, o)
        if q.aggregates or q.having is not None:
            raise SoqlError("MALFORMED_QUERY", "HAVING can only be used with a GROUP BY clause")
        paths: list[Path] = []
        seen: set[str] = set()
        for ref in q.fields:
            p = self.resolve(q, o, ref)
            # Aliases name aggregate results (and toLabel/FORMAT columns): not plain fields.
            if ref.alias is not None and not {"TOLABEL", "FORMAT"} & set(ref.functions):
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"\n{q.text}\n{' ' * ref.pos}^\nERROR at Row:1:Column:{ref.pos + 1}\n"
                    f"unexpected token: '{ref.alias}'",
                )
            key = (p.canonical if not ref.alias else ref.alias).lower()
            if key in seen:
                raise SoqlError("INVALID_FIELD", f"duplicate field selected: {p.canonical}")
            seen.add(key)
            paths.append(p)
        typeofs = [self._typeof(q, o, t) for t in q.typeofs]
        for plan in typeofs:
            name = plan.lookup.relationship_name or ""
            taken = any(p.hops and p.hops[0].name == plan.lookup.name for p in paths)
            if taken or name.lower() in seen:
                raise SoqlError("INVALID_FIELD", f"duplicate field selected: {name}")
            seen.add(name.lower())
        for item in q.order_by:
            if isinstance(item.field, Aggregate):
                raise SoqlError(
                    "MALFORMED_QUERY", "Aggregate functions can only be ordered by in an "
                    "aggregate query"
                )  # fmt: skip
            p = self.resolve(q, o, item.field)
            if p.field.type == "textarea" and p.field.length > 255:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * item.field.pos}^\nERROR at Row:1:Column:"
                    f"{item.field.pos + 1}\nfield '{p.field.name}' can not be sorted in a query "
                    "call",
                )
            item.field.path = p.canonical
        return Compiled(q, o, paths, children, typeofs)

    def _compile_aggregate(self, q: Query, o: ObjectDef) -> Compiled:
        fields: dict[str, FieldDef] = {}
        for ref in aggregate.referenced_fields(q):
            p = self.resolve(q, o, ref)
            ref.path = p.canonical
            fields[p.canonical.lower()] = p.field
        aggregate.check(q, fields)
        return Compiled(q, o, [], [], fields=fields)

    def _check_scope(self, q: Query, o: ObjectDef) -> None:
        """USING SCOPE: everything, and mine on objects with an owner (team, territories and
        queue scopes are not modelled)."""
        if q.scope is None:
            return
        allowed = SCOPES_OF_OWNED if "OwnerId" in o.fields else ("everything",)
        if q.scope not in allowed:
            raise SoqlError(
                "MALFORMED_QUERY",
                f"\n{q.text}\n{' ' * q.scope_pos}^\nERROR at Row:1:Column:{q.scope_pos + 1}\n"
                f"Scope '{q.scope}' is not supported for {o.name}; supported: "
                f"{', '.join(allowed)}",
            )

    def _typeof(self, q: Query, o: ObjectDef, t: soql.TypeOf) -> TypeOfPlan:
        lookup = o.relationships.get(t.relationship.lower())
        if lookup is None or not _polymorphic(lookup):
            raise SoqlError(
                "INVALID_FIELD",
                f"\n{q.text}\n{' ' * t.pos}^\nERROR at Row:1:Column:{t.pos + 1}\n"
                f"TYPEOF can only be used on a polymorphic relationship: '{t.relationship}' is not "
                "one",
            )
        whens: dict[str, list[Path]] = {}
        for sobject, refs in t.whens:
            target = self.schema.object(sobject)
            if target is None or target.name not in lookup.reference_to:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{q.text}\n{' ' * t.pos}^\nERROR at Row:1:Column:{t.pos + 1}\n"
                    f"'{sobject}' is not a type {lookup.relationship_name} can refer to",
                )
            whens[target.name] = [self.resolve(q, target, ref) for ref in refs]
        otherwise = None
        if t.otherwise is not None:
            otherwise = []
            for ref in t.otherwise:
                fd = self._name_entity_field(q, ref, ref.path)
                otherwise.append(Path([], fd, POLY_TYPE if fd.name == "Type" else fd.name, ref))
        return TypeOfPlan(lookup, whens, otherwise)

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
        if cur is not None and parts[-1] == POLY_TYPE:
            return self.schema.sobject_for_prefix(cur["Id"][:3])
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

    def _records(self, o: ObjectDef, all_rows: bool) -> list[dict[str, Any]]:
        if o.name == organization.NAME:
            return [organization.record(self.server)]
        return list(self.state.records(o.name, include_deleted=all_rows))

    def _candidates(self, q: Query, o: ObjectDef, all_rows: bool) -> list[dict[str, Any]]:
        where = q.where
        simple = isinstance(where, Comparison) and not where.field.functions
        if o.name == organization.NAME or not simple:
            return self._records(o, all_rows)
        # Id = 'x' / Id IN (...): straight to the records (the common lookup shape).
        if where.field.path == "Id" and where.op in ("=", "IN"):
            wanted = where.value if isinstance(where.value, list) else [where.value]
            out = []
            # A repeated id (or the semi-join's many children of one parent) is one record.
            for rid in dict.fromkeys(wanted):
                rec = self.state.get(o.name, rid, include_deleted=all_rows) if rid else None
                if rec is not None:
                    out.append(rec)
            return out
        if (
            where.op == "="
            and "." not in where.field.path
            and isinstance(where.value, str)
            and not all_rows
        ):
            hits = self.state.lookup(o.name, where.field.path, where.value)
            if hits is not None:
                return [r for r in (self.state.get(o.name, i) for i in hits) if r is not None]
        return self._records(o, all_rows)

    @staticmethod
    def _scoped(
        c: Compiled, source: Iterable[dict[str, Any]], user_id: str
    ) -> Iterable[dict[str, Any]]:
        """USING SCOPE Mine: the records the querying user owns."""
        if c.q.scope == "mine":
            return [r for r in source if r.get("OwnerId") == user_id]
        return source

    def _filter(self, c: Compiled, source: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of `source` that the query's WHERE clause keeps."""
        now = self.state.clock.now()
        return [
            r for r in source if soql.evaluate_where(c.q.where, r, now=now, resolve=self._value)
        ]

    def _select(
        self, c: Compiled, source: Iterable[dict[str, Any]], all_rows: bool
    ) -> list[dict[str, Any]]:
        """The records of `source` that the query selects, in its order, offset and limit."""
        q = c.q
        rows = self._filter(c, source)
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
        source = self._scoped(c, self._candidates(c.q, c.o, all_rows), user_id)
        if c.q.is_aggregate:
            return aggregate.run(
                c.q,
                self._filter(c, source),
                c.fields,
                self._value,
                batch_size=batch_size,
                now=self.state.clock.now(),
            )
        rows = self._select(c, source, all_rows)
        if c.q.count:
            return {"totalSize": len(rows), "done": True, "records": []}
        shaped = [self._shape(c, r, version) for r in rows]
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
                        "records": [self._shape(child.compiled, k, version) for k in kids],
                    }
                    if kids
                    else None
                )
        return self._page(shaped, batch_size, user_id, version, all_rows)

    def _shape(self, c: Compiled, rec: dict[str, Any], version: str) -> dict[str, Any]:
        out = self._record(c.o, rec, c.paths, version)
        for plan in c.typeofs:
            out[plan.lookup.relationship_name or plan.lookup.name] = self._typeof_value(
                plan, rec, version
            )
        return out

    def _record(
        self, o: ObjectDef, rec: dict[str, Any], paths: list[Path], version: str, kind: str = ""
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": kind or o.name,
                "url": f"/services/data/v{version}/sobjects/{o.name}/{rec['Id']}",
            }
        }
        for p in paths:
            if not p.hops:
                out[p.key] = self._output(p, rec, rec.get(p.field.name))
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
                    # A polymorphic lookup answers as the Name entity (its url is the record's).
                    shown = "Name" if _polymorphic(hop) else parent_type
                    existing = {"attributes": {"type": shown, "url": url}}
                    node[rel] = existing
                node = existing
                src = parent
            if node is not None and src is not None:
                node[p.field.name] = self._output(p, src, src.get(p.field.name))
        return out

    def _output(self, p: Path, src: dict[str, Any], value: Any) -> Any:
        """A selected value as the API shows it: a polymorphic Type, toLabel, FORMAT."""
        if p.canonical.endswith(POLY_TYPE):
            return self.schema.sobject_for_prefix(src["Id"][:3])
        if p.ref is not None and "FORMAT" in p.ref.functions:
            return aggregate.format_value(p.field, value)
        return value  # toLabel: the local org's picklist labels are their values

    def _typeof_value(self, plan: TypeOfPlan, rec: dict[str, Any], version: str) -> Any:
        parent = self._parent(rec.get(plan.lookup.name))
        if parent is None:
            return None
        sobject = self.schema.sobject_for_prefix(parent["Id"][:3]) or ""
        target = self.schema.objects.get(sobject)
        paths = plan.whens.get(sobject, plan.otherwise or [])
        if target is None:
            return None
        return self._record(target, parent, paths, version)

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


def _after_functions(fd: FieldDef, functions: tuple[str, ...]) -> FieldDef:
    """The type a WHERE comparison sees: DAY_ONLY gives a date, other date functions a
    number."""
    for fn in functions:
        if fn == "DAY_ONLY":
            fd = FieldDef(fd.name, "date", label=fd.label)
        elif fn in soql.DATE_FUNCTIONS:
            fd = FieldDef(fd.name, "int", label=fd.label)
    return fd


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
