"""The queue a reviewer triages from (the person, referral, member, proposed change, match,
reasons in words; search, sort, counts that respect the filters; same-record grouping), the
entry page's field edits, the audit log in words, the favicon and the API reference page."""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.salesforce.fieldcache import save_field_names
from bridge.store.models import SalesEntry
from tests.web.conftest import AuthActions
from tests.web.seed import Seeded


def _ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'name="entry_id" value="(\d+)"', html)]


def _tab_count(html: str, tab: str) -> int:
    match = re.search(rf'>{tab} <span class="n">(\d+)</span>', html)
    assert match, tab
    return int(match.group(1))


def test_the_queue_shows_what_a_reviewer_decides_on(
    client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    html = client.get("/queue/review").get_data(as_text=True)
    row = html[html.index(f'value="{seeded.ids["review_fuzzy"]}"') :].split("</tr>")[0]
    for text in ("Bob Buyer", "bob@buyer.test", "Buyer Ltd", "<code>ref_0000</code>"):
        assert text in row, text
    assert "Alice Member <code>ALICE</code>" in row  # the referring member
    assert "pending → qualified" in row and "fuzzy 1.00" in row
    assert "fuzzy matches wait for a reviewer" in row  # plain words ...
    assert "<details><summary>detail</summary>" in row  # ... the codes and config behind them
    assert "receiver.process.auto_process_fuzzy is false" in row
    assert "status_rule:0" not in row.split("<details>")[0]
    assert 'data-effect="→ qualified"' in row
    assert html.count('class="bulk"') == 2  # the bulk bar above and below the list
    assert "Apply the proposed changes…" in html and ">Approve<" not in html
    denied = html[html.index(f'value="{seeded.ids["review_denied"]}"') :].split("</tr>")[0]
    assert "denied → qualified" in denied and "direct (Lead.Referral_ID__c)" in denied


def test_search_filters_and_counts_that_follow_them(
    client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    ids = seeded.ids
    by_email = client.get("/queue/review?q=bob@buyer").get_data(as_text=True)
    assert _ids(by_email) == [ids["review_fuzzy"]]
    # the counts of every tab follow the search; the tab links keep it
    assert _tab_count(by_email, "review") == 1 and _tab_count(by_email, "processed") == 0
    assert 'href="/queue/failed?q=bob@buyer"' in by_email
    assert _ids(client.get("/queue/review?q=dan+denied").get_data(as_text=True)) == [
        ids["review_denied"]
    ]
    assert _ids(client.get("/queue/review?q=ref_0002").get_data(as_text=True)) == [
        ids["review_denied"]
    ]
    by_code = client.get("/queue/review?q=alice").get_data(as_text=True)  # member code
    assert len(_ids(by_code)) == 3
    assert _ids(client.get("/queue/review?q=nobody-like-this").get_data(as_text=True)) == []
    # the failed Lead names the mistyped member code in its record
    assert _ids(client.get("/queue/failed?q=ALISE").get_data(as_text=True)) == [ids["failed"]]


def test_sorting(client: FlaskClient, auth: AuthActions, seeded: Seeded) -> None:
    auth.login()
    ids = seeded.ids
    newest = _ids(client.get("/queue/review").get_data(as_text=True))
    oldest = _ids(client.get("/queue/review?sort=oldest").get_data(as_text=True))
    assert oldest == list(reversed(newest))
    by_referral = _ids(client.get("/queue/review?sort=referral").get_data(as_text=True))
    assert by_referral == [ids["review_fuzzy"], ids["review_partner"], ids["review_denied"]]
    assert client.get("/queue/review?sort=nonsense").status_code == 200


def test_entries_for_one_record_are_grouped_and_the_older_marked_superseded(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    with app.extensions["sfbridge"].store.session() as s:
        first = s.get(SalesEntry, seeded.ids["review_fuzzy"])
        assert first is not None
        again = SalesEntry(
            org_connection_id=first.org_connection_id,
            program_id=first.program_id,
            source="stream",
            sobject_type="Lead",
            record_id=first.record_id,
            change_type="updated",
            raw={},
            records=first.records,
            outcome="review",
            reasons=first.reasons,
            decision=first.decision,
            candidates=first.candidates,
            referral_id=first.referral_id,
        )
        s.add(again)
        s.flush()
        newer = again.id
    auth.login()
    html = client.get("/queue/review").get_data(as_text=True)
    order = _ids(html)
    assert order[:2] == [newer, seeded.ids["review_fuzzy"]]  # side by side
    assert f"superseded by #{newer}" in html
    assert "2 for this record" in html
    # the echo of the bridge's own write (skipped) supersedes nothing
    with app.extensions["sfbridge"].store.session() as s:
        s.get(SalesEntry, newer).outcome = "skipped"  # type: ignore[union-attr]
    html = client.get("/queue/review").get_data(as_text=True)
    assert "superseded by" not in html and "2 for this record" in html


def test_next_entry_after_a_decision(
    client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    ids = seeded.ids
    resp = auth.post(
        f"/entries/{ids['review_fuzzy']}/reject",
        {"next": f"/entries/{ids['review_fuzzy']}?tab=review"},
        follow_redirects=True,
    )
    html = resp.get_data(as_text=True)
    assert "Decided — next entry" in html
    assert "<strong>Decision:</strong> rejected: nothing changed" in html  # not the old proposal
    nxt = int(re.search(r'id="next-entry" href="/entries/(\d+)', html).group(1))  # type: ignore[union-attr]
    assert nxt in (ids["review_denied"], ids["review_partner"])


def test_field_edits_are_checked_and_several_saved_at_once(
    app: Flask, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    eid = seeded.ids["failed"]
    typo = auth.post(
        f"/entries/{eid}/retry",
        {"add_field": ["Lead.Referral_ID__c", "Lead.Emial"], "add_value": ["ref_0001", "x"]},
        follow_redirects=True,
    )
    assert "did you mean Lead.Email?" in typo.get_data(as_text=True)
    with app.extensions["sfbridge"].store.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None and "Emial" not in e.records["Lead"] and e.outcome == "failed"
    auth.post(
        f"/entries/{eid}/retry",
        {
            "field:Lead:Company": "Error Holdings",
            "add_field": ["Lead.Referral_ID__c", ""],
            "add_value": ["ref_0001", ""],
        },
    )
    with app.extensions["sfbridge"].store.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None
        assert e.records["Lead"]["Company"] == "Error Holdings"
        assert e.records["Lead"]["Referral_ID__c"] == "ref_0001"
        # decided again: the id matched Carol's referral directly (already qualified)
        assert e.outcome != "failed" and e.referral_id == seeded.ids["ref_carol"]


def test_audit_in_words_with_partial_filters(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    auth.post(f"/entries/{seeded.ids['review_partner']}/reject", {"note": "not ours"})
    html = client.get("/audit?action=REJECT&actor=reviewer@").get_data(as_text=True)
    assert "rejected the entry: note: not ours" in html
    assert '<details class="raw"><summary>raw</summary>' in html
    assert "1 record(s)" in html
    assert "0 record(s)" in client.get("/audit?action=%25").get_data(as_text=True)
    entry = client.get(f"/entries/{seeded.ids['review_partner']}").get_data(as_text=True)
    assert "rejected the entry: note: not ours" in entry
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>", entry)  # times with their zone
    with app.extensions["sfbridge"].store.session() as s:
        assert s.scalar(select(SalesEntry.outcome).where(SalesEntry.id == 1))


def test_favicon_and_api_reference(client: FlaskClient, auth: AuthActions) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert b"<svg" in icon.data
    ref = client.get("/api")
    html = ref.get_data(as_text=True)
    assert ref.status_code == 200
    assert "<code>POST /referrals</code>" in html and 'id="schema-Referral"' in html
    assert "<code>referrals:write</code>" in html
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', html)  # nothing external
    auth.login()
    assert 'rel="icon"' in client.get("/").get_data(as_text=True)


def test_field_names_are_checked_against_the_kept_describe(
    app: Flask, auth: AuthActions, seeded: Seeded, tmp_path: Path
) -> None:
    save_field_names(
        tmp_path / "instance",
        "acme",
        {"Lead": {"fields": [{"name": n} for n in ("Id", "Email", "Phone", "Status")]}},
    )
    auth.login()
    eid = seeded.ids["failed"]
    typo = auth.post(
        f"/entries/{eid}/retry",
        {"add_field": "Lead.Emial", "add_value": "x"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "not in the record nor the org&#39;s describe; did you mean Lead.Email?" in typo
    auth.post(f"/entries/{eid}/retry", {"add_field": "Lead.Phone", "add_value": "+44 1"})
    with app.extensions["sfbridge"].store.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None and e.records["Lead"]["Phone"] == "+44 1"  # the org has it
