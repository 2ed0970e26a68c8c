"""Custom objects and fields of the local org, as the Metadata API describes them.

Two ways in, one meaning: the package's source files (`objects/X__c/X__c.object-meta.xml`,
`objects/<Object>/fields/*.field-meta.xml`; an Activity field applies to Task and Event, as in
a real org) are read at start, and `POST /__devorg__/metadata` deploys the same definitions as
JSON at run time (CustomObject and CustomField property names: `fullName`, `label`, `type`,
`length`, `referenceTo`, `relationshipName`, `valueSet`…). Deployed definitions are kept in the
data dir and survive restarts and resets, as a deployed object does in a real org.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET  # noqa: S405 - parses the project's own metadata files
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.devorg.schema import (
    DT,
    RO,
    FieldDef,
    ObjectDef,
    S,
    Schema,
    default_label,
    system_fields,
)

_MD = "{http://soap.sforce.com/2006/04/metadata}"
_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*__c$")
FIELD_TYPES = {
    "Text", "TextArea", "LongTextArea", "Html", "Email", "Phone", "Url", "Checkbox", "Number",
    "Currency", "Percent", "Date", "DateTime", "Picklist", "MultiselectPicklist", "Lookup",
    "MasterDetail",
}  # fmt: skip


class MetadataError(ValueError):
    """A definition the org cannot deploy; the message says why."""


# ---- reading the source format ------------------------------------------------------------------


def _xml_props(root: ET.Element) -> dict[str, Any]:
    """An element's children as properties: text, or a nested dict for `nameField`/`valueSet`."""
    out: dict[str, Any] = {}
    for child in root:
        tag = child.tag.replace(_MD, "")
        if tag == "valueSet":
            values = [(_child_text(v, "fullName") or "") for v in child.iter(_MD + "value")]
            out[tag] = {"restricted": _child_text(child, "restricted"), "values": values}
        elif tag == "nameField":
            out[tag] = _xml_props(child)
        elif tag == "formula" or len(child) == 0:
            out[tag] = (child.text or "").strip()
    return out


def _child_text(el: ET.Element, tag: str) -> str | None:
    child = el.find(_MD + tag)
    return child.text.strip() if child is not None and child.text else None


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _int(props: Mapping[str, Any], key: str) -> int:
    try:
        return int(props.get(key) or 0)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"{key} must be a number, not {props.get(key)!r}") from exc


# ---- definitions -------------------------------------------------------------------------------


def custom_field(props: Mapping[str, Any]) -> FieldDef:
    """A CustomField from its properties (source XML or JSON)."""
    name = str(props.get("fullName") or "")
    if not _CUSTOM_NAME.match(name):
        raise MetadataError(f"fullName {name!r} is not a custom field name (Name__c)")
    kind = str(props.get("type") or "Text")
    if kind not in FIELD_TYPES:
        raise MetadataError(f"{name}: type {kind!r} is not one of {sorted(FIELD_TYPES)}")
    length, precision, scale = _int(props, "length"), _int(props, "precision"), _int(props, "scale")
    flags: dict[str, Any] = {
        "label": str(props.get("label") or default_label(name)),
        "custom": True,
        "external_id": _flag(props.get("externalId")),
        "unique": _flag(props.get("unique")),
        "case_sensitive": _flag(props.get("caseSensitive")),
    }
    required = _flag(props.get("required"))
    if props.get("formula"):
        flags["calculated"] = True
    fd: FieldDef
    if kind == "Text":
        fd = FieldDef(name, "string", length=length or 255, **flags)
    elif kind == "TextArea":
        fd = FieldDef(name, "textarea", length=255, **flags)
    elif kind in ("LongTextArea", "Html"):
        fd = FieldDef(name, "textarea", length=length or 32768, **flags)
    elif kind in ("Email", "Phone", "Url"):
        size = {"Email": 80, "Phone": 40, "Url": 255}[kind]
        fd = FieldDef(name, kind.lower(), length=size, **flags)
    elif kind == "Checkbox":
        default = _flag(props.get("defaultValue"))
        fd = FieldDef(
            name, "boolean", nillable=False, defaulted=True, default_value=default, **flags
        )
        required = False
    elif kind in ("Number", "Currency", "Percent"):
        t = {"Number": "double", "Currency": "currency", "Percent": "percent"}[kind]
        fd = FieldDef(name, t, precision=precision or 18, scale=scale, **flags)
    elif kind in ("Date", "DateTime"):
        fd = FieldDef(name, kind.lower(), **flags)
    elif kind in ("Picklist", "MultiselectPicklist"):
        value_set = props.get("valueSet") or {}
        values = [str(v) for v in value_set.get("values") or [] if v]
        if not values:
            raise MetadataError(f"{name}: a picklist needs valueSet.values")
        fd = FieldDef(
            name,
            "picklist" if kind == "Picklist" else "multipicklist",
            length=255 if kind == "Picklist" else 4099,
            picklist=values,
            restricted=_flag(value_set.get("restricted")),
            **flags,
        )
    else:  # Lookup, MasterDetail
        # Account__c is read as Account__r from the child; relationshipName names the child
        # relationship on the parent (Sites -> Account.Sites__r)
        to = str(props.get("referenceTo") or "")
        if not to:
            raise MetadataError(f"{name}: a {kind} field needs referenceTo")
        fd = FieldDef(
            name, "reference", length=18, reference_to=[to], relationship_name=name[:-3] + "__r",
            **flags,
        )  # fmt: skip
        fd.child_relationship = str(props.get("relationshipName") or name[:-3]) + "__r"
        if kind == "MasterDetail":
            required = True
            fd.master_detail = True
            fd.updateable = _flag(props.get("reparentableMasterDetail"))
    if required:
        fd.nillable = False
    if flags.get("calculated"):
        fd.createable = fd.updateable = False
    return fd


def custom_object(props: Mapping[str, Any], key_prefix: str) -> ObjectDef:
    """A CustomObject (label, pluralLabel, nameField of type Text or AutoNumber); its fields
    come separately."""
    name = str(props.get("fullName") or "")
    if not _CUSTOM_NAME.match(name):
        raise MetadataError(f"fullName {name!r} is not a custom object name (Name__c)")
    label = str(props.get("label") or default_label(name))
    o = ObjectDef(name, label, str(props.get("pluralLabel") or label), key_prefix, custom=True)
    for fd in system_fields(["Group", "User"]):
        o.add(fd)
    name_props = props.get("nameField") or {}
    name_label = str(name_props.get("label") or f"{label} Name")
    if name_props.get("type") == "AutoNumber":
        fd = RO(S("Name", 80, label=name_label, name_field=True, nillable=False, defaulted=True))
        fd.auto_number = str(name_props.get("displayFormat") or "{0}")
    else:
        fd = S("Name", 80, label=name_label, name_field=True, nillable=False, defaulted=True)
    o.add(fd)
    for extra in (RO(DT("LastViewedDate")), RO(DT("LastReferencedDate"))):
        o.add(extra)
    return o


# ---- the package and deployments -----------------------------------------------------------------


def load_package(schema: Schema, package_dir: Path) -> None:
    """Add the custom objects and fields of an SFDX package dir (force-app) to the schema."""
    objects_dir = package_dir / "main" / "default" / "objects"
    if not objects_dir.is_dir():
        objects_dir = package_dir / "objects"
    for path in sorted(p for p in objects_dir.glob("*__c") if p.is_dir()):
        meta = path / f"{path.name}.object-meta.xml"
        try:
            props = _xml_props(ET.parse(meta).getroot()) if meta.is_file() else {}  # noqa: S314
            schema.add_object(
                custom_object({**props, "fullName": path.name}, schema.next_custom_prefix())
            )
        except (ET.ParseError, MetadataError):
            continue  # an unparseable or unusable file is the package helper's to report
    for path in sorted(objects_dir.glob("*/fields/*.field-meta.xml")):
        owner = path.parent.parent.name
        for target in ["Task", "Event"] if owner == "Activity" else [owner]:
            if target not in schema.objects:
                continue
            try:
                props = _xml_props(ET.parse(path).getroot())  # noqa: S314
                props.setdefault("fullName", path.name.split(".")[0])
                schema.add_field(target, custom_field(props))
            except (ET.ParseError, MetadataError):
                continue


def deploy(schema: Schema, body: Any) -> list[str]:
    """Add `{"objects": [CustomObject + "fields": [CustomField…]], "fields": {"Lead":
    [CustomField…]}}` to the schema, all or nothing; the names of what was deployed."""
    if not isinstance(body, dict) or not set(body) <= {"objects", "fields"}:
        raise MetadataError('the body must be {"objects": [...], "fields": {"Object": [...]}}')
    objects = body.get("objects") or []
    fields = body.get("fields") or {}
    if not isinstance(objects, list) or not isinstance(fields, dict):
        raise MetadataError("objects must be a list and fields an object of lists")
    planned: list[tuple[ObjectDef | None, str, list[FieldDef]]] = []
    known = set(schema.objects)
    taken: set[str] = set()  # the prefixes of this deployment's new objects
    for props in objects:
        if not isinstance(props, dict):
            raise MetadataError("each object must be a JSON object")
        prefix = schema.next_custom_prefix(taken)
        taken.add(prefix)
        o = custom_object(props, prefix)
        known.add(o.name)
        planned.append((o, o.name, [_field(p) for p in props.get("fields") or []]))
    for sobject, defs in fields.items():
        if not isinstance(defs, list):
            raise MetadataError(f"fields.{sobject} must be a list")
        planned.append((None, str(sobject), [_field(p) for p in defs]))
    for _, sobject, defs in planned:
        if sobject not in known:
            raise MetadataError(f"no object {sobject!r} to add fields to")
        for fd in defs:
            missing = [t for t in fd.reference_to if t not in known]
            if missing:
                raise MetadataError(f"{sobject}.{fd.name}: referenceTo {missing[0]!r} is no object")
    deployed = []
    for new, sobject, defs in planned:
        if new is not None:
            schema.add_object(new)
            deployed.append(sobject)
        for fd in defs:
            schema.add_field(sobject, fd)
            deployed.append(f"{sobject}.{fd.name}")
    return deployed


def _field(props: Any) -> FieldDef:
    if not isinstance(props, dict):
        raise MetadataError("each field must be a JSON object")
    return custom_field(props)


class Deployments:
    """The definitions deployed through the control API, kept in `<data dir>/metadata.json`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "metadata.json"
        self.bodies: list[Any] = []
        if self.path.is_file():
            self.bodies = list(json.loads(self.path.read_text(encoding="utf-8")))

    def apply(self, schema: Schema) -> None:
        """Deploy what was deployed before (at start)."""
        for body in self.bodies:
            try:
                deploy(schema, body)
            except MetadataError:
                continue  # a package change made it undeployable; the rest still applies

    def add(self, schema: Schema, body: Any) -> list[str]:
        deployed = deploy(schema, body)
        self.bodies.append(body)
        self.path.write_text(json.dumps(self.bodies, indent=1) + "\n", encoding="utf-8")
        return deployed
