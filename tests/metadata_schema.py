"""The Metadata API schema (from simple-salesforce's metadata.wsdl) and package checks.

SFDX source files are single metadata components whose root element is the component type
(`<CustomField>`, `<PermissionSet>`) in the metadata namespace. The WSDL only declares those as
complexTypes, so the extracted schema gets one global element per type before it is compiled;
lxml then enforces element order, required elements and enumerations exactly as deploy does.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache
from pathlib import Path

from lxml import etree

XSD_NS = "http://www.w3.org/2001/XMLSchema"
METADATA_NS = "http://soap.sforce.com/2006/04/metadata"

# SFDX source suffix (`<name>.<suffix>-meta.xml`) -> metadata type (the root element).
SUFFIX_TYPES = {
    "field": "CustomField",
    "permissionset": "PermissionSet",
    "object": "CustomObject",
    "listView": "ListView",
    "layout": "Layout",
}

# Metadata API format (what `sf project convert source` writes): extension -> type.
METADATA_FORMAT_TYPES = {".object": "CustomObject", ".permissionset": "PermissionSet"}


def wsdl_api_version() -> str:
    """The Metadata API version simple-salesforce's WSDL describes (from its header comment)."""
    text = (importlib.resources.files("simple_salesforce") / "metadata.wsdl").read_text()
    head = text[:400]
    marker = "Metadata API version "
    return head[head.index(marker) + len(marker) :].split()[0]


@lru_cache(maxsize=1)
def metadata_schema() -> etree.XMLSchema:
    path = importlib.resources.files("simple_salesforce") / "metadata.wsdl"
    wsdl = etree.parse(str(path))
    embedded = wsdl.find(f".//{{{XSD_NS}}}schema")
    assert embedded is not None, "metadata.wsdl has no embedded schema"
    # Serialize and re-parse so the schema keeps the namespace prefixes (tns:) it inherits
    # from <definitions>.
    schema = etree.fromstring(etree.tostring(embedded))
    declared = {e.get("name") for e in schema.findall(f"{{{XSD_NS}}}element")}
    roots = {*SUFFIX_TYPES.values(), *METADATA_FORMAT_TYPES.values(), "Package"}
    for type_name in sorted(roots - declared):
        etree.SubElement(schema, f"{{{XSD_NS}}}element", name=type_name, type=f"tns:{type_name}")
    return etree.XMLSchema(etree.ElementTree(schema))


def metadata_type(path: Path) -> str | None:
    """The metadata type an SFDX source file must hold, from its file name."""
    name = path.name
    if not name.endswith("-meta.xml"):
        return None
    suffix = name.removesuffix("-meta.xml").rsplit(".", 1)[-1]
    return SUFFIX_TYPES.get(suffix)


def validate_file(path: Path) -> list[str]:
    """Every schema problem in one SFDX source file, as `file:line: message`."""
    expected = metadata_type(path)
    if expected is None:
        return [f"{path}: unknown metadata file type (add its suffix to SUFFIX_TYPES)"]
    return validate_as(path, expected)


def validate_as(path: Path, expected: str) -> list[str]:
    """Every schema problem in a file whose root must be the metadata type `expected`."""
    try:
        doc = etree.parse(str(path))
    except etree.XMLSyntaxError as exc:
        return [f"{path}: not well-formed XML: {exc}"]
    root = doc.getroot()
    if root.tag != f"{{{METADATA_NS}}}{expected}":
        return [f"{path}: root element is {root.tag}, expected {{{METADATA_NS}}}{expected}"]
    schema = metadata_schema()
    if schema.validate(doc):
        return []
    return [f"{path}:{e.line}: {e.message}" for e in schema.error_log]  # type: ignore[attr-defined]


def _text(el: etree._Element, name: str) -> str | None:
    child = el.find(f"{{{METADATA_NS}}}{name}")
    return None if child is None else child.text


def package_fields(force_app: Path) -> dict[str, dict[str, str | None]]:
    """`Object.Field` -> the CustomField's type, length, externalId, unique and referenceTo, for
    every field file."""
    out: dict[str, dict[str, str | None]] = {}
    for path in sorted(force_app.glob("**/objects/*/fields/*.field-meta.xml")):
        root = etree.parse(str(path)).getroot()
        sobject = path.parent.parent.name
        name = _text(root, "fullName") or path.name.removesuffix(".field-meta.xml")
        out[f"{sobject}.{name}"] = {
            "type": _text(root, "type"),
            "length": _text(root, "length"),
            "externalId": _text(root, "externalId"),
            "unique": _text(root, "unique"),
            "referenceTo": _text(root, "referenceTo"),
        }
    return out


def permission_set_problems(force_app: Path, permission_set: Path) -> list[str]:
    """Field grants in the permission set that name no package field, and fields not granted.

    Activity custom fields are granted as `Task.<Field>` (Salesforce mirrors the grant onto
    Event); `Activity.<Field>` is refused by deploy, so it is reported here.
    """
    fields = package_fields(force_app)
    root = etree.parse(str(permission_set)).getroot()
    problems: list[str] = []
    granted: set[str] = set()
    for perm in root.findall(f"{{{METADATA_NS}}}fieldPermissions"):
        ref = _text(perm, "field") or ""
        sobject, _, name = ref.partition(".")
        if sobject == "Activity":
            problems.append(f"{ref}: grant Activity fields as Task.{name}, not Activity.{name}")
            continue
        package_ref = f"Activity.{name}" if sobject in ("Task", "Event") else ref
        if package_ref not in fields:
            problems.append(f"{ref}: no such field in {force_app}")
            continue
        if (_text(perm, "readable"), _text(perm, "editable")) != ("true", "true"):
            problems.append(f"{ref}: the integration user needs read and edit")
        granted.add(package_ref)
    for ref in sorted(set(fields) - granted):
        granted_as = ref.replace("Activity.", "Task.", 1)
        problems.append(f"{ref}: not granted by the permission set (add {granted_as})")
    return problems
