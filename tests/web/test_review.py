"""The reviewer UI: the queue and its filters, the entry page, actions, bulk, reports, audit."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import AuditLog, Push, Referral, SalesEntry
from bridge.vocabulary import ENTRY_OUTCOMES, STREAMED_OBJECTS
from tests.web.conftest import AuthActions
from tests.web.seed import Seeded, seed


def _entry(app: Flask, entry_id: int) -> SalesEntry:
    with app.extensions["sfbridge"].store.session() as s:
        e = s.get(SalesEntry, entry_id)
        assert e is not None
        return e


def _audit(app: Flask, action: str) -> list[AuditLog]:
    with app.extensions["sfbridge"].store.session() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def _entry_ids(html: str) -> set[int]:
    return {int(x) for x in re.findall(r'name="entry_id" value="(\d+)"', html)}


def test_queue_tabs_and_filters(client: FlaskClient, auth: AuthActions, seeded: Seeded) -> None:
    auth.login()
    ids = seeded.ids
    html = client.get("/queue/review").get_data(as_text=True)
    assert _entry_ids(html) == {ids["review_fuzzy"], ids["review_denied"], ids["review_partner"]}
    assert _entry_ids(client.get("/queue/review?program=partners").get_data(as_text=True)) == {
        ids["review_partner"]
    }
    assert _entry_ids(client.get("/queue/review?object=Lead").get_data(as_text=True)) == {
        ids["review_fuzzy"],
        ids["review_denied"],
    }
    assert _entry_ids(client.get("/queue/review?reason=denied_upgrade").get_data(as_text=True)) == {
        ids["review_denied"]
    }
    today = _entry(client.application, ids["review_fuzzy"]).created_at.date().isoformat()
    html = client.get(f"/queue/review?date_from={today}&date_to={today}").get_data(as_text=True)
    assert _entry_ids(html) == {ids["review_fuzzy"]}
    bad = client.get("/queue/review?date_from=yesterday").get_data(as_text=True)
    assert "is not a date" in bad
    failed = client.get("/queue/failed").get_data(as_text=True)
    assert _entry_ids(failed) == {ids["failed"]}
    assert client.get("/queue/nonsense").status_code == 404


def test_queue_pages(app: Flask, client: FlaskClient, auth: AuthActions) -> None:
    app.config["PAGE_SIZE"] = 2
    auth.login()
    first = client.get("/queue/review").get_data(as_text=True)
    second = client.get("/queue/review?page=2").get_data(as_text=True)
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    assert len(_entry_ids(first)) == 2 and len(_entry_ids(second)) == 1
    assert not _entry_ids(first) & _entry_ids(second)


def test_entry_page_explains_why_it_waits(
    client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    html = client.get(f"/entries/{seeded.ids['review_fuzzy']}").get_data(as_text=True)
    assert "Why it waits" in html
    assert "found by normalized email or a similar name" in html  # fuzzy_match in words
    assert "Auto_process_fuzzy is off: a reviewer approves fuzzy matches" in html
    assert "Status rule number 0 (counting from 0) matched" in html
    assert re.search(r"<code>ref_0000</code>.*?bob@buyer.test.*?1\.00", html, re.S)  # scored
    assert "<dt>status it sets</dt><dd>qualified</dd>" in html
    assert 'name="field:Lead:Email"' in html  # editable record
    # the button says what it does; the rule and the setting behind the reasons are named
    assert re.search(r'id="approve">Apply: qualify</button>', html)
    assert "pending → qualified" in html and "fuzzy 1.00" in html
    assert "status_rules[0]: Lead.Status equals &#39;Qualified&#39; → qualified" in html
    assert "receiver.process.auto_process_fuzzy is false" in html
    assert 'href="https://acme.example/00Qbob@buyer.teXXX"' in html  # the record in Salesforce
    assert "referred by <strong>Alice Member</strong>" in html
    assert "only, to decide it again; nothing is written to Salesforce" in html
    failed = client.get(f"/entries/{seeded.ids['failed']}").get_data(as_text=True)
    assert "Why it failed" in failed and "unmatched: no referral and no referring" in failed
    assert "The entry names a referring member that does not exist" in failed
    assert client.get("/entries/99999").status_code == 404


def test_approve_from_the_entry_page(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    eid = seeded.ids["review_fuzzy"]
    resp = auth.post(f"/entries/{eid}/approve", follow_redirects=True)
    html = resp.get_data(as_text=True)
    assert f"Entry {eid} applied: it is now processed; referral ref_0000 is qualified" in html
    assert _entry(app, eid).outcome != "review"
    # the page after the decision: the referral's status now, and the evidence kept
    assert '<strong id="referral-status">qualified</strong>' in html
    assert re.search(r"<code>ref_0000</code>.*?bob@buyer.test.*?1\.00", html, re.S)
    assert "reviewer&#39;s choice (was fuzzy 1.00)" in html
    assert "<dt>first matched by</dt><dd>fuzzy" in html
    [row] = _audit(app, "entry.approved")
    assert row.actor == "reviewer@example.com" and row.object_id == str(eid)
    assert row.object_type == "sales_entry"
    again = auth.post(f"/entries/{eid}/approve", follow_redirects=True)
    assert "was not applied" in again.get_data(as_text=True)


def test_reject_with_a_note(app: Flask, auth: AuthActions, seeded: Seeded) -> None:
    auth.login()
    eid = seeded.ids["review_partner"]
    auth.post(f"/entries/{eid}/reject", {"note": "not ours"})
    assert _entry(app, eid).outcome == "skipped"
    [row] = _audit(app, "entry.rejected")
    assert row.detail.get("note") == "not ours"


def test_edit_fields_and_retry_sends_only_changes(
    app: Flask, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    eid = seeded.ids["failed"]
    before = _entry(app, eid).records["Lead"]
    form = {
        f"field:Lead:{k}": ("" if v is None else str(v)) for k, v in before.items() if k != "Id"
    }
    form["field:Lead:Referral_Code__c"] = "ALICE"  # the member code was mistyped "ALISE"
    auth.post(f"/entries/{eid}/retry", form)
    after = _entry(app, eid)
    assert after.records["Lead"]["Referral_Code__c"] == "ALICE"
    assert after.outcome == "processed" and "referral_created" in after.reasons
    [row] = _audit(app, "entry.retried")
    assert row.detail["edits"] == {"Lead": {"Referral_Code__c": "ALICE"}}


def test_add_a_missing_field_and_retry(app: Flask, auth: AuthActions, seeded: Seeded) -> None:
    auth.login()
    eid = seeded.ids["review_fuzzy"]
    auth.post(
        f"/entries/{eid}/retry", {"add_field": "Lead.Referral_ID__c", "add_value": "ref_0000"}
    )
    after = _entry(app, eid)
    assert after.records["Lead"]["Referral_ID__c"] == "ref_0000"
    assert after.outcome == "processed" and "direct_match" in after.reasons
    bad = auth.post(
        f"/entries/{seeded.ids['review_denied']}/retry",
        {"add_field": "Contact.Account.Name", "add_value": "x"},
        follow_redirects=True,
    )
    assert "relationship path" in bad.get_data(as_text=True)


def test_pick_another_referral(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    eid = seeded.ids["review_fuzzy"]
    html = client.get(f"/entries/{eid}?find=carol").get_data(as_text=True)
    assert "carol@client.test" in html and "Pick and decide again" in html
    # Carol is not the person of Bob's record: the pick is flagged before and after
    assert "⚠ email carol@client.test ≠ the record&#39;s bob@buyer.test" in html
    assert "No referral matches" in client.get(f"/entries/{eid}?find=zzz").get_data(as_text=True)
    picked = auth.post(
        f"/entries/{eid}/retry", {"referral_id": seeded.ids["ref_carol"]}, follow_redirects=True
    )
    assert "Check the referral you picked: its name Carol Client" in picked.get_data(as_text=True)
    [row] = _audit(app, "entry.retried")
    assert row.detail["chosen_referral_id"] == seeded.ids["ref_carol"]
    after = _entry(app, eid)
    assert after.referral_id == seeded.ids["ref_carol"] and "reviewer_choice" in after.reasons


def test_bulk_approve_and_reject(app: Flask, auth: AuthActions, seeded: Seeded) -> None:
    auth.login()
    ids = seeded.ids
    picked = [ids["review_fuzzy"], ids["review_denied"], ids["processed"]]
    # first the confirmation, listing the effects; nothing changes yet
    confirm = auth.post("/entries/bulk", {"action": "apply", "entry_id": picked})
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "Confirm: apply the proposed changes" in html
    assert "This will do: 2 referrals → qualified, 1 entry with nothing to apply." in html
    assert f'name="expect:{ids["review_fuzzy"]}" value="→ qualified"' in html
    assert _entry(app, ids["review_fuzzy"]).outcome == "review" and not _audit(
        app, "entry.approved"
    )
    # a proposal that changed since the confirmation is left alone
    resp = auth.post(
        "/entries/bulk",
        {
            "action": "apply",
            "confirm": "yes",
            "entry_id": picked,
            f"expect:{ids['review_denied']}": "→ denied",
        },
        follow_redirects=True,
    )
    html = resp.get_data(as_text=True)
    assert "Done: 1 referral → qualified." in html
    assert f"Not changed: {ids['review_denied']} (its proposed change is now" in html
    assert f"{ids['processed']} (entry {ids['processed']} is processed" in html
    assert len(_audit(app, "entry.approved")) == 1
    assert _entry(app, ids["review_denied"]).outcome == "review"
    auth.post(
        "/entries/bulk",
        {"action": "reject", "confirm": "yes", "entry_id": [ids["review_partner"]]},
    )
    assert _entry(app, ids["review_partner"]).outcome == "skipped"
    nothing = auth.post("/entries/bulk", {"action": "approve"}, follow_redirects=True)
    assert "Tick at least one entry" in nothing.get_data(as_text=True)


def test_dashboard_counts_and_chart(client: FlaskClient, auth: AuthActions) -> None:
    auth.login()
    html = client.get("/").get_data(as_text=True)
    assert re.search(
        r'data-field="entries.review">3</span><span class="label">waiting for review',
        html,
    )
    assert "<svg" in html and "Entries per day by outcome" in html
    assert html.count("<rect") >= 6  # bars for the seeded days + legend swatches
    assert re.search(r"<title>\d{4}-\d\d-\d\d: 1 processed</title>", html)


def test_push_report_and_repush(app: Flask, seeded: Seeded) -> None:
    client = app.test_client()
    auth = AuthActions(client)
    auth.login("admin@example.com")
    html = client.get("/reports/pushes?state=failed").get_data(as_text=True)
    assert "STRING_TOO_LONG" in html and "Company: data value too large" in html
    assert "Repush" in html
    assert "Carol Client (ref_0001)" in html  # the referral by name, not a bare id
    pid = seeded.ids["push_failed"]
    resp = auth.post(f"/reports/pushes/{pid}/repush", follow_redirects=True)
    assert f"Push {pid} will be sent again" in resp.get_data(as_text=True)
    with app.extensions["sfbridge"].store.session() as s:
        push = s.get(Push, pid)
        assert push is not None and push.state == "pending" and push.error_code is None
    assert [a.object_id for a in _audit(app, "push.repush")] == [str(pid)]
    sent = auth.post(f"/reports/pushes/{seeded.ids['push_sent']}/repush", follow_redirects=True)
    assert "only failed or skipped pushes can be repushed" in sent.get_data(as_text=True)


def test_fix_and_repush_changes_the_field_salesforce_refused(app: Flask, seeded: Seeded) -> None:
    client = app.test_client()
    auth = AuthActions(client)
    pid = seeded.ids["push_failed"]
    auth.login()  # a reviewer sees the push and its error, but no form
    page = client.get(f"/reports/pushes/{pid}").get_data(as_text=True)
    assert "STRING_TOO_LONG" in page and "Fix and repush" not in page
    assert "Not sent yet." in page
    auth.login("admin@example.com")
    page = client.get(f"/reports/pushes/{pid}").get_data(as_text=True)
    assert 'name="field.Company"' in page and "Company: data value too large" in page
    resp = auth.post(
        f"/reports/pushes/{pid}/repush", {"field.Company": "Acme"}, follow_redirects=True
    )
    assert f"Push {pid} will be sent again with Company changed" in resp.get_data(as_text=True)
    with app.extensions["sfbridge"].store.session() as s:
        push = s.get(Push, pid)
        assert push is not None and push.state == "pending"
        assert push.payload["overrides"] == {"Company": "Acme"}
        referral = s.get(Referral, push.referral_id)  # "also save" not ticked: the push alone
        assert referral is not None and referral.company != "Acme"
    again = client.get(f"/reports/pushes/{pid}").get_data(as_text=True)
    assert "overrides" in again and "Acme" in again  # what it now carries
    assert 'name="field.Company"' not in again  # pending: nothing to fix until it fails
    assert client.get("/reports/pushes/999999").status_code == 404


def test_fix_and_repush_also_saves_on_the_referral_when_ticked(app: Flask, seeded: Seeded) -> None:
    """The Company Salesforce refused comes from the referral: the page offers to save the fix
    there too, ticked; saved, the referral changed through its own edit (audited)."""
    client = app.test_client()
    auth = AuthActions(client)
    pid = seeded.ids["push_failed"]
    auth.login("admin@example.com")
    page = client.get(f"/reports/pushes/{pid}").get_data(as_text=True)
    box = re.search(r'<input type="checkbox" name="save.Company"[^>]*>', page)
    assert box and "checked" in box.group(0), page
    assert "also save on the referral (<code>company</code>)" in page
    resp = auth.post(
        f"/reports/pushes/{pid}/repush",
        {"field.Company": "Acme Corp", "save.Company": "yes"},
        follow_redirects=True,
    )
    assert "saved on the referral: company" in resp.get_data(as_text=True)
    with app.extensions["sfbridge"].store.session() as s:
        push = s.get(Push, pid)
        assert push is not None and push.state == "pending"
        assert push.payload["overrides"] == {"Company": "Acme Corp"}
        referral = s.get(Referral, push.referral_id)
        assert referral is not None and referral.company == "Acme Corp"
    assert [a.object_id for a in _audit(app, "referral.update")] == [str(push.referral_id)]
    shown = client.get(f"/referrals/{push.referral_id}").get_data(as_text=True)
    assert "Acme Corp" in shown


def test_entry_report_and_audit_view(
    client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    html = client.get("/reports/entries?result=error").get_data(as_text=True)
    assert "unmatched: no referral" in html and "Retry" in html
    assert "Eve Error" in html and "nobody matched: no referral, no member" in html
    assert "Big deal" not in html
    auth.post(f"/entries/{seeded.ids['review_partner']}/reject")
    audit = client.get("/audit?action=entry.rejected").get_data(as_text=True)
    assert f"entry {seeded.ids['review_partner']}" in audit
    assert "reviewer@example.com" in audit


@pytest.mark.postgres
def test_queue_filters_on_both_databases(store: Store, app_factory: Callable[..., Flask]) -> None:
    seeded = seed(store)
    client = app_factory(store).test_client()
    AuthActions(client).login()
    ids = seeded.ids
    html = client.get("/queue/review?reason=denied_upgrade").get_data(as_text=True)
    assert _entry_ids(html) == {ids["review_denied"]}
    html = client.get("/queue/review?reason=status_rule&object=Lead").get_data(as_text=True)
    assert _entry_ids(html) == {ids["review_fuzzy"], ids["review_denied"]}
    html = client.get("/queue/review?program=partners").get_data(as_text=True)
    assert _entry_ids(html) == {ids["review_partner"]}
    assert "<svg" in client.get("/").get_data(as_text=True)
    # search in the records' JSON, the referral and the member; sorting by joined columns
    for q, want in (("Bob@Buyer", {ids["review_fuzzy"]}), ("ref_0002", {ids["review_denied"]})):
        assert _entry_ids(client.get(f"/queue/review?q={q}").get_data(as_text=True)) == want
    assert len(_entry_ids(client.get("/queue/review?q=alice").get_data(as_text=True))) == 3
    for sort in ("referral", "member", "object", "oldest"):
        assert client.get(f"/queue/review?sort={sort}&q=%25_").status_code == 200
    assert "This will do" in AuthActions(client).post(
        "/entries/bulk", {"action": "apply", "entry_id": [ids["review_fuzzy"]]}
    ).get_data(as_text=True)
    assert client.get("/audit?action=LOG%25").status_code == 200


def test_actions_without_the_config_file_say_so(
    app: Flask, auth: AuthActions, seeded: Seeded, config_file: Path
) -> None:
    auth.login()
    config_file.unlink()
    entry_id = seeded.ids["review_fuzzy"]
    resp = auth.post(f"/entries/{entry_id}/approve", follow_redirects=True)
    assert resp.status_code == 200
    assert f"Entry {entry_id} was not applied" in resp.get_data(as_text=True)
    assert _entry(app, entry_id).outcome == "review"


def test_bulk_ignores_ids_that_are_not_plain_numbers(
    app: Flask, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    entry_id = seeded.ids["review_fuzzy"]
    resp = auth.post(
        "/entries/bulk",
        {"action": "reject", "confirm": "yes", "entry_id": ["\u00b2", str(10**20), str(entry_id)]},
        follow_redirects=True,
    )
    assert resp.status_code == 200
    assert _entry(app, entry_id).outcome == "skipped"


def test_retry_with_a_malformed_field_name_says_so(
    app: Flask, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    eid = seeded.ids["review_fuzzy"]
    resp = auth.post(f"/entries/{eid}/retry", {"field:Lead": "x"}, follow_redirects=True)
    assert resp.status_code == 200
    assert f"Entry {eid} was not retried" in resp.get_data(as_text=True)
    assert _entry(app, eid).outcome == "review"


@pytest.mark.parametrize("path", ["/queue/review", "/audit", "/reports/pushes", "/reports/entries"])
def test_a_page_number_past_the_end_is_an_empty_page(
    client: FlaskClient, auth: AuthActions, path: str
) -> None:
    auth.login()
    assert client.get(f"{path}?page={10**20}").status_code == 200


def test_an_id_past_64_bits_is_a_404(client: FlaskClient, auth: AuthActions) -> None:
    auth.login()
    assert client.get(f"/entries/{10**20}").status_code == 404


def test_the_dashboard_and_queue_list_the_vocabulary(
    client: FlaskClient, auth: AuthActions
) -> None:
    auth.login()
    dashboard = client.get("/").get_data(as_text=True)
    tiles = re.findall(r'class="tile (\w+)" href="/queue/(\w+)"', dashboard)
    assert tiles == [(o, o) for o in ENTRY_OUTCOMES]
    queue = client.get("/queue/review").get_data(as_text=True)
    tabs = re.findall(r'<a href="/queue/(\w+)[^"]*" class="[^"]*">', queue)
    assert tabs == list(ENTRY_OUTCOMES)
    objects = re.search(r'<select name="object">(.*?)</select>', queue, re.S)
    assert objects and re.findall(r"<option\s*(?:selected)?\s*>(\w+)<", objects.group(1)) == list(
        STREAMED_OBJECTS
    )
