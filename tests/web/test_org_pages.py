"""The org and mapping pages: the config file's path and `config check` result, the orgs, and
per org each configured field with its last `org check` status, the sync rules and the picklist
Inspect view; `org check` runs from the page by POST (the real run against the local org is in
tests/web/test_browser_console.py)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from bridge.salesforce import check, fieldcache
from tests.web.conftest import AuthActions
from tests.web.seed import org_config

LEAD = {
    "name": "Lead",
    "fields": [
        {"name": "Id", "type": "id"},
        {"name": "Email", "type": "email", "createable": True, "updateable": True},
        {
            "name": "Status",
            "type": "picklist",
            "createable": True,
            "updateable": True,
            "picklistValues": [
                {"value": "Open", "active": True},
                {"value": "Working", "active": True},
                {"value": "Qualified", "active": False},
                {"value": "Converted", "active": True},
            ],
        },
    ],
}


def test_the_mapping_page_shows_the_last_check_and_inspects_picklists(
    app: Flask, client: FlaskClient, auth: AuthActions, tmp_path: Path
) -> None:
    auth.login("reviewer@example.com")
    assert client.get("/admin/orgs/acme").status_code == 403  # admins only
    auth.login("admin@example.com")
    page = client.get("/admin/orgs/acme").get_data(as_text=True)
    assert "Not run yet" in page and "<code>Lead.Status</code>" in page
    assert "decides a referral status" in page
    assert "<code>member.name</code>" in page and "the bridge owns it" in page  # sync rules

    instance = tmp_path / "instance"
    describes: dict[str, check.Describe | str] = {"Lead": LEAD}
    fieldcache.save_field_names(instance, "acme", describes)
    findings = check.check_describes("acme", org_config(), describes, [])
    fieldcache.save_check(instance, "acme", check.as_rows(findings))
    page = client.get("/admin/orgs/acme").get_data(as_text=True)
    row = page.split("<code>receiver.status_rules[0]</code>", 1)[1].split("</details>", 1)[0]
    assert ">Issue<" in row and "&#39;Qualified&#39; is not an active value" in row
    inspect = row.split('<details class="inspect">', 1)[1]
    assert "<code>Qualified</code></td><td>not an active value" in inspect
    assert "<code>Open</code>, <code>Working</code>, <code>Converted</code>" in inspect
    assert 'id="issue-count">' in page

    listing = client.get("/admin/orgs").get_data(as_text=True)
    assert "sfbridge.yaml</code>" in listing and "finds no problem" in listing
    assert "not connected: <code>sfbridge org connect acme</code>" not in listing  # seeded row
    assert "Issue(s)</span>" in listing
    assert client.get("/admin/orgs/nowhere").status_code == 404


def test_running_the_check_needs_a_connection_and_says_why(
    client: FlaskClient, auth: AuthActions
) -> None:
    auth.login("admin@example.com")
    done = auth.post("/admin/orgs/acme/check", follow_redirects=True)
    assert "org check did not run:" in done.get_data(as_text=True)


def test_a_broken_config_file_is_shown_not_raised(
    app: Flask, client: FlaskClient, auth: AuthActions, config_file: Path
) -> None:
    auth.login("admin@example.com")
    config_file.write_text("orgs:\n  acme:\n    login_urll: x\n", encoding="utf-8")
    page = client.get("/admin/orgs").get_data(as_text=True)
    assert "problem(s)" in page and "login_urll" in page
