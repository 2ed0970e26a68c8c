"""`writeback.sales.sites`: the package's objects by default, every name checked, mistakes
reported with file, line and key."""

from __future__ import annotations

import pytest

from bridge.config import check_config_text
from bridge.salesforce.package import ORGANIZATION_OBJECT, SITE_OBJECT

HEAD = """\
orgs:
  acme:
    programs: [{key: partners, name: Partners}]
    receiver: {program: partners}
    writeback:
      sales:
"""


def _check(sites: str) -> tuple[object, list[str]]:
    config, problems = check_config_text(HEAD + sites, "sfbridge.yaml")
    return config, [str(p) for p in problems]


def test_sites_are_off_unless_configured() -> None:
    config, problems = check_config_text(HEAD + "        phone_region: US\n", "sfbridge.yaml")
    assert problems == [] and config is not None
    assert config.orgs["acme"].writeback.sales.sites is None


def test_an_empty_mapping_takes_the_package_objects() -> None:
    config, problems = check_config_text(HEAD + "        sites: {}\n", "sfbridge.yaml")
    assert problems == [] and config is not None
    sites = config.orgs["acme"].writeback.sales.sites
    assert sites is not None and sites.organization is not None
    assert (sites.object, sites.key_field, sites.account_field, sites.organization_field) == (
        SITE_OBJECT, "Site_Key__c", "Account__c", "Organization__c"
    )  # fmt: skip
    assert (sites.organization.object, sites.organization.key_field) == (
        ORGANIZATION_OBJECT, "Organization_Key__c"
    )  # fmt: skip


def test_the_orgs_own_objects_without_an_organization() -> None:
    config, problems = _check(
        "        sites:\n"
        "          object: Location__c\n"
        "          key_field: Location_Key__c\n"
        "          account_field: Customer__c\n"
        "          location_field: null\n"
        "          organization_field: null\n"
        "          organization: null\n"
    )
    assert problems == []


PREFIX = "sfbridge.yaml:{line}: orgs.acme.writeback.sales.sites"


@pytest.mark.parametrize(
    ("sites", "line", "key", "message"),
    [
        ("        sites:\n          object: Site\n", 8, ".object",
         "'Site' is not the API name of a custom object or field (Name__c)"),
        ("        sites:\n          key_field: Id\n", 8, ".key_field", "'Id' is not the API name"),
        ("        sites:\n          location: Location__c\n", 8, ".location",
         "unknown key"),
        ("        sites:\n          organization:\n            account_field: Account\n", 9,
         ".organization.account_field", "'Account' is not the API name"),
        ("        sites:\n          organization: null\n", 7, "",
         "organization_field Organization__c links to an organization, but organization is "
         "null"),
        ("        sites:\n          location_field: Site_Key__c\n", 7, "",
         "location_field and key_field both name Site_Key__c"),
        ("        sites:\n          organization: {object: SFBridge_Site__c}\n", 7, "",
         "organization.object is SFBridge_Site__c, the sites' object too"),
    ],
)  # fmt: skip
def test_mistakes_name_file_line_and_key(sites: str, line: int, key: str, message: str) -> None:
    config, problems = _check(sites)
    assert config is None
    [problem] = problems
    assert problem.startswith(PREFIX.format(line=line) + key + ":"), problem
    assert message in problem


def test_the_demo_config_sends_a_sales_locations_as_sites() -> None:
    from bridge.devorg.demo import CONFIG_TEMPLATE

    values = dict.fromkeys(
        ("login_url", "client_id", "username", "private_key_file", "ca_bundle", "api_version"),
        "x",
    )
    text = CONFIG_TEMPLATE.format(
        org="demo", program="demo", **values | {"login_url": "https://127.0.0.1:1"}
    )
    text = text.replace('api_version: "x"', 'api_version: "63.0"')
    text = text.replace("username: x", "username: integration@example.com")
    config, problems = check_config_text(text, "demo.yaml")
    assert problems == [] and config is not None
    assert config.orgs["demo"].writeback.sales.sites is not None
