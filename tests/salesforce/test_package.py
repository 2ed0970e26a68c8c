"""The Salesforce package in force-app: schema-valid, complete, and consistent with the bridge."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from lxml import etree

from bridge.config import OrgConfig, check_config_text
from bridge.salesforce import check, package
from tests.metadata_schema import (
    METADATA_FORMAT_TYPES,
    METADATA_NS,
    package_fields,
    permission_set_problems,
    validate_as,
    validate_file,
    wsdl_api_version,
)

ROOT = Path(__file__).resolve().parents[2]
FORCE_APP = ROOT / "force-app"
DEFAULT = FORCE_APP / "main" / "default"
PERMISSION_SET = DEFAULT / "permissionsets" / f"{package.PERMISSION_SET}.permissionset-meta.xml"
XML_FILES = sorted(FORCE_APP.rglob("*.xml"))
NS = {"m": METADATA_NS}


def test_schema_is_the_package_api_version() -> None:
    assert wsdl_api_version() == package.PACKAGE_API_VERSION


def test_sfdx_project() -> None:
    project = json.loads((ROOT / "sfdx-project.json").read_text())
    assert project["name"] == package.PACKAGE_NAME
    assert project["sourceApiVersion"] == package.PACKAGE_API_VERSION
    [directory] = project["packageDirectories"]
    assert directory["path"] == "force-app"
    assert directory["default"] is True


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: str(p.relative_to(FORCE_APP)))
def test_every_file_validates_against_the_metadata_schema(path: Path) -> None:
    assert validate_file(path) == []


def test_package_has_the_expected_files() -> None:
    # 1 activity field + 12 on Lead + 12 on Contact + the two multi-site objects with their
    # 2 + 4 fields + the permission set
    assert len(XML_FILES) == 34


def _copy(path: Path, tmp_path: Path) -> Path:
    target = tmp_path / path.name
    shutil.copy(path, target)
    return target


def test_element_order_is_enforced(tmp_path: Path) -> None:
    field = _copy(DEFAULT / "objects/Lead/fields/Referral_ID__c.field-meta.xml", tmp_path)
    text = field.read_text()
    label = "    <label>Referral ID</label>\n"
    assert label in text
    # <label> after <type> is out of the schema's sequence.
    text = text.replace(label, "").replace("</CustomField>", label + "</CustomField>")
    field.write_text(text)
    problems = validate_file(field)
    assert problems and "label" in problems[0] and "not expected" in problems[0]


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("<type>Text</type>", "<type>Txt</type>", "Txt"),
        ("<length>100</length>", "<length>hundred</length>", "hundred"),
        ("<externalId>true</externalId>", "<externalID>true</externalID>", "externalID"),
        ("</CustomField>", "<fullName>again</fullName></CustomField>", "fullName"),
        ("</CustomField>", "", "not well-formed"),
    ],
)
def test_broken_field_files_are_rejected(tmp_path: Path, old: str, new: str, expect: str) -> None:
    field = _copy(DEFAULT / "objects/Lead/fields/Referral_ID__c.field-meta.xml", tmp_path)
    text = field.read_text()
    assert old in text
    field.write_text(text.replace(old, new, 1))
    problems = validate_file(field)
    assert problems
    assert expect in " ".join(problems)


def test_broken_permission_set_is_rejected(tmp_path: Path) -> None:
    copy = _copy(PERMISSION_SET, tmp_path)
    text = copy.read_text()
    # <label> is required in a PermissionSet
    copy.write_text(text.replace("    <label>SFBridge Integration</label>\n", ""))
    problems = validate_file(copy)
    assert problems and "label" in " ".join(problems)


def test_wrong_root_element_is_rejected(tmp_path: Path) -> None:
    field = tmp_path / "X__c.field-meta.xml"
    field.write_text(PERMISSION_SET.read_text())
    assert "expected" in validate_file(field)[0]


def test_package_module_matches_force_app() -> None:
    found = package_fields(FORCE_APP)
    expected = {
        f.ref: {
            "type": f.metadata_type,
            "length": str(f.length) if f.length else None,
            "externalId": None
            if f.metadata_type == "Lookup"
            else ("true" if f.external_id else "false"),
            "unique": ("true" if f.unique else "false") if f.metadata_type == "Text" else None,
            "referenceTo": f.reference_to,
        }
        for f in package.PACKAGE_FIELDS
    }
    assert found == expected


def test_activity_id_field_is_an_external_id() -> None:
    fields = package_fields(FORCE_APP)
    spec = fields[f"Activity.{package.ACTIVITY_ID_FIELD}"]
    assert spec == {
        "type": "Text", "length": "100", "externalId": "true", "unique": "false",
        "referenceTo": None,
    }  # fmt: skip


def test_permission_set_grants_exactly_the_package_fields() -> None:
    assert permission_set_problems(FORCE_APP, PERMISSION_SET) == []


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (
            "<field>Task.SFBridge_Activity_Id__c</field>",
            "<field>Activity.SFBridge_Activity_Id__c</field>",
            "grant Activity fields as Task.SFBridge_Activity_Id__c",
        ),
        (
            "<field>Lead.Referral_Code__c</field>",
            "<field>Lead.Referral_Kode__c</field>",
            "Lead.Referral_Kode__c: no such field",
        ),
        (
            "<field>Contact.Referral_URL__c</field>",
            "<field>Contact.Referral_ID__c</field>",
            "Contact.Referral_URL__c: not granted",
        ),
    ],
)
def test_permission_set_check_catches_mistakes(
    tmp_path: Path, old: str, new: str, expect: str
) -> None:
    copy = _copy(PERMISSION_SET, tmp_path)
    text = copy.read_text()
    assert old in text
    copy.write_text(text.replace(old, new))
    problems = permission_set_problems(FORCE_APP, copy)
    assert any(expect in p for p in problems), problems


def _permission_set() -> etree._Element:
    return etree.parse(str(PERMISSION_SET)).getroot()


def _object_permissions() -> dict[str | None, dict[str, bool]]:
    return {
        p.findtext("m:object", namespaces=NS): {
            flag: p.findtext(f"m:{flag}", namespaces=NS) == "true"
            for flag in ("allowRead", "allowCreate", "allowEdit", "allowDelete", "viewAllRecords")
        }
        for p in _permission_set().findall("m:objectPermissions", NS)
    }


def _enabled_user_permissions() -> set[str | None]:
    return {
        p.findtext("m:name", namespaces=NS)
        for p in _permission_set().findall("m:userPermissions", NS)
        if p.findtext("m:enabled", namespaces=NS) == "true"
    }


# Objects the bridge writes that a permission set cannot name, and what grants them instead:
# activities by user permissions; opportunity products and contact roles by Edit on the
# Opportunity; standard prices (PricebookEntry) by Edit on the Product.
GRANTED_BY = {
    "Task": "EditTask",
    "Event": "EditEvent",
    "OpportunityLineItem": "Opportunity",
    "OpportunityContactRole": "Opportunity",
    "PricebookEntry": "Product2",
}

# What the sales pipeline writes whatever the config (bridge/writeback/sales*.py).
SALES_WRITES = (
    "Account", "Contact", "Opportunity", "OpportunityContactRole", "OpportunityLineItem",
    "PricebookEntry", "Product2",
)  # fmt: skip


def _everything_config() -> OrgConfig:
    """The example config with every write turned on: the routing campaign, the multi-site
    sync, Lead conversion, price entries."""
    text = (ROOT / "bridge" / "examples" / "sfbridge.example.yaml").read_text()
    config = yaml.safe_load(text)
    org = next(iter(config["orgs"].values()))
    org.setdefault("routing", {})["campaign"] = {"name": "Partner referrals"}
    sales = org.setdefault("writeback", {}).setdefault("sales", {})
    sales |= {"sites": {}, "convert_leads": True, "create_price_entries": True}
    checked, problems = check_config_text(yaml.safe_dump(config), "everything.yaml")
    assert checked is not None, problems
    return next(iter(checked.orgs.values()))


def test_every_object_the_bridge_writes_is_granted() -> None:
    org = _everything_config()
    needs = check.object_needs(org)
    written = {o for o, n in needs.items() if n & {"create", "update"}} | set(SALES_WRITES)
    assert {"CampaignMember", package.SITE_OBJECT, package.ORGANIZATION_OBJECT} <= written
    perms = _object_permissions()
    users = _enabled_user_permissions()
    for sobject in sorted(written):
        grant = GRANTED_BY.get(sobject, sobject)
        if grant in users:
            continue
        assert grant in perms, f"{sobject}: no objectPermissions for {grant}"
        wanted = needs.get(sobject, {"create", "update"})
        assert perms[grant]["allowRead"], sobject
        assert perms[grant]["allowCreate"] or "create" not in wanted, sobject
        assert perms[grant]["allowEdit"] or "update" not in wanted, sobject
        if grant != sobject:
            assert sobject not in perms, f"{sobject} is granted through {grant}"
    for sobject in needs:  # what is only read (Campaign) is readable too
        if sobject not in GRANTED_BY:
            assert perms[sobject]["allowRead"], sobject


def test_object_permissions() -> None:
    perms = _object_permissions()
    # Streaming only delivers changes to records the subscriber can see.
    for sobject in ("Account", "Contact", "Lead", "Opportunity"):
        assert perms[sobject]["viewAllRecords"], sobject
    assert perms["Pricebook2"]["allowRead"]
    # Routing reads the campaign and adds members; it never edits the campaign itself.
    assert perms["Campaign"] == {**perms["Campaign"], "allowRead": True, "allowEdit": False}
    assert not any(p["allowDelete"] for p in perms.values())


def test_user_permissions() -> None:
    # API access; activities (Tasks and Events have no object permissions); convertLead at
    # demo set (writeback.sales.convert_leads, on by default)
    assert _enabled_user_permissions() == {"ApiEnabled", "EditTask", "EditEvent", "ConvertLeads"}
    assert _everything_config().writeback.sales.convert_leads


# ---- conversion to Metadata API format with Salesforce's own converter ----------------------

SDR = ROOT / "tests" / "sdr"


def test_source_converts_to_metadata_format(tmp_path: Path) -> None:
    """Salesforce's source-deploy-retrieve reads force-app as `sf project deploy` would."""
    node = shutil.which("node")
    if node is None or not (SDR / "node_modules" / "@salesforce").is_dir():
        pytest.skip("the converter is not installed: npm install --prefix tests/sdr")
    out = tmp_path / "mdapi"
    result = subprocess.run(
        [node, str(SDR / "convert.js"), "force-app", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    components = json.loads(result.stdout)["components"]
    # the fields of the package's own objects travel inside their CustomObject
    assert sorted(components) == sorted(
        [
            f"CustomField:{f.ref}"
            for f in package.PACKAGE_FIELDS
            if f.ref.split(".")[0] not in package.PACKAGE_OBJECTS
        ]
        + [f"CustomObject:{o}" for o in package.PACKAGE_OBJECTS]
        + [f"PermissionSet:{package.PERMISSION_SET}"]
    )
    package_xml = etree.parse(str(out / "package.xml")).getroot()
    assert package_xml.findtext("m:version", namespaces=NS) == package.PACKAGE_API_VERSION
    assert validate_as(out / "package.xml", "Package") == []
    converted = sorted(p for p in out.rglob("*") if p.suffix in METADATA_FORMAT_TYPES)
    assert [p.name for p in converted] == [
        "Activity.object", "Contact.object", "Lead.object", "SFBridge_Organization__c.object",
        "SFBridge_Site__c.object", "SFBridge_Integration.permissionset",
    ]  # fmt: skip
    for path in converted:
        if path.stem in package.PACKAGE_OBJECTS:
            path = _children_in_schema_order(path)
        assert validate_as(path, METADATA_FORMAT_TYPES[path.suffix]) == []
    lead = etree.parse(str(out / "objects" / "Lead.object")).getroot()
    lead_fields = [f for f in package.PACKAGE_FIELDS if f.ref.startswith("Lead.")]
    assert len(lead.findall("m:fields", NS)) == len(lead_fields) == 12


def _children_in_schema_order(path: Path) -> Path:
    """The converter recomposes a custom object with its fields after the object's own
    elements; CustomObject's schema sequence is alphabetical, so check them in that order."""
    tree = etree.parse(str(path))
    root = tree.getroot()
    children = sorted(root, key=lambda e: etree.QName(e).localname)
    for child in children:
        root.append(child)  # moving each one to the end, in order
    ordered = path.with_name(f"{path.stem}.ordered{path.suffix}")
    tree.write(str(ordered), xml_declaration=True, encoding="UTF-8")
    return ordered


FIELD_FILES = sorted(FORCE_APP.glob("**/objects/*/fields/*.field-meta.xml"))


@pytest.mark.parametrize("path", FIELD_FILES, ids=lambda p: f"{p.parent.parent.name}.{p.name}")
def test_field_texts_fit_salesforce_limits(path: Path) -> None:
    """Limits deploy enforces but the schema cannot express, and text an admin needs."""
    root = etree.parse(str(path)).getroot()
    name = root.findtext("m:fullName", namespaces=NS) or ""
    assert path.name == f"{name}.field-meta.xml"
    assert len(name) <= 40 and name.endswith("__c")
    label = root.findtext("m:label", namespaces=NS) or ""
    assert 0 < len(label) <= 40
    description = root.findtext("m:description", namespaces=NS) or ""
    assert 40 <= len(description) <= 1000, "describe the field for the admin"
    help_text = root.findtext("m:inlineHelpText", namespaces=NS) or ""
    assert 0 < len(help_text) <= 510
    if root.findtext("m:type", namespaces=NS) == "Text":
        assert 0 < int(root.findtext("m:length", namespaces=NS) or 0) <= 255


def test_permission_set_texts_fit_salesforce_limits() -> None:
    root = _permission_set()
    assert len(root.findtext("m:label", namespaces=NS) or "") <= 80
    assert 0 < len(root.findtext("m:description", namespaces=NS) or "") <= 255
