"""`sfbridge org check` for the multi-site sync (`writeback.sales.sites`): the site and
organization objects are described like the others (`site_objects` adds them to what the
check needs), and each field the sync writes must exist and be writable, its keys External
IDs, its lookups pointing at the objects the config says. Pure: describes in, findings out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.config import OrgConfig
from bridge.salesforce.findings import Finding, issue, ok
from bridge.salesforce.package import PERMISSION_SET

Describe = Mapping[str, Any]


def site_objects(org: OrgConfig) -> dict[str, set[str]]:
    """The objects the sync upserts (created, or updated by their key), with the access each
    needs."""
    sites = org.writeback.sales.sites
    if sites is None:
        return {}
    needs = {sites.object: {"read", "create", "update"}}
    if sites.organization is not None:
        needs[sites.organization.object] = {"read", "create", "update"}
    return needs


def site_fields(org: OrgConfig) -> list[tuple[str, str, str, str | None]]:
    """The fields the multi-site sync writes: (config key, object, field, what it must be:
    `key` an External ID, an object name a lookup to it, None a plain value)."""
    sites = org.writeback.sales.sites
    if sites is None:
        return []
    where = "writeback.sales.sites"
    out: list[tuple[str, str, str, str | None]] = [
        (f"{where}.key_field", sites.object, sites.key_field, "key"),
        (f"{where}.name_field", sites.object, sites.name_field, None),
        (f"{where}.account_field", sites.object, sites.account_field, "Account"),
    ]
    if sites.location_field:
        out.append((f"{where}.location_field", sites.object, sites.location_field, None))
    org_spec = sites.organization
    if org_spec is not None:
        if sites.organization_field:
            out.append(
                (f"{where}.organization_field", sites.object, sites.organization_field,
                 org_spec.object)
            )  # fmt: skip
        where += ".organization"
        out += [
            (f"{where}.key_field", org_spec.object, org_spec.key_field, "key"),
            (f"{where}.name_field", org_spec.object, org_spec.name_field, None),
            (f"{where}.account_field", org_spec.object, org_spec.account_field, "Account"),
        ]
    return out


def check_sites(org: OrgConfig, describes: Mapping[str, Describe | str]) -> list[Finding]:
    """Every field of `writeback.sales.sites` exists and is writable, the keys are External
    IDs and each lookup points at the object the config says."""
    out: list[Finding] = []
    for where, sobject, name, must in site_fields(org):
        desc = describes.get(sobject)
        subject = f"{sobject}.{name}"
        if desc is None or isinstance(desc, str):
            continue  # check_objects reports the object
        field = next((f for f in desc.get("fields", []) if f.get("name") == name), None)
        targets = [str(t) for t in (field or {}).get("referenceTo") or []]
        if field is None:
            out.append(
                issue("sites", subject, f"{where}: not found: the field does not exist, or the "
                      f"integration user cannot see it (is the {PERMISSION_SET} permission set "
                      "assigned?)")
            )  # fmt: skip
        elif not (field.get("createable") and field.get("updateable")):
            out.append(
                issue("sites", subject, f"{where}: read-only for the integration user; the "
                      f"{PERMISSION_SET} permission set grants edit on the package's fields")
            )  # fmt: skip
        elif must == "key" and not field.get("externalId"):
            out.append(
                issue("sites", subject, f"{where}: not an External ID; the bridge upserts "
                      f"{sobject} records by it")
            )  # fmt: skip
        elif must not in (None, "key") and must not in targets:
            out.append(
                issue("sites", subject, f"{where}: looks up {', '.join(targets) or 'nothing'}; "
                      f"it must be a lookup to {must}")
            )  # fmt: skip
        else:
            what = {None: "written", "key": "External ID, upserted by"}.get(must, f"-> {must}")
            out.append(ok("sites", subject, what))
    return out
