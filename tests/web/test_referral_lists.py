"""Referrals and members: the list (search, filters, sorting, paging), the referral page's
status with its dates and history, a status change by the state machine's rules (audited),
member pages, "add as referral" from an entry that matched nobody, and the CSV exports
(streamed, filtered, safe from formula injection)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bridge.store import Store
from bridge.store.models import AuditLog, Referral, ReferralStatusChange, SalesEntry
from bridge.web.export import safe_cell
from tests.web.conftest import AuthActions
from tests.web.seed import Seeded, seed


def _rows(html: str) -> list[str]:
    body = html.split('<table class="list referrals">', 1)[1].split("</table>", 1)[0]
    return [c.split("</code>", 1)[0] for c in body.split("<code>")[1:] if c.startswith("ref_")]


def test_the_referral_list_searches_filters_sorts_and_pages(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    everything = client.get("/referrals").get_data(as_text=True)
    assert _rows(everything) == ["ref_0002", "ref_0001", "ref_0000"]  # newest first
    assert "Alice Member" in everything and "ALICE" in everything
    by = {
        "q=carol": ["ref_0001"],
        "q=BOB%40buyer": ["ref_0000"],  # part of an email, any case
        "q=ref_0002": ["ref_0002"],  # the public id
        "q=alice": ["ref_0002", "ref_0001", "ref_0000"],  # the member's code or name
        "status=denied": ["ref_0002"],
        "program=partners": [],
        "sort=name": ["ref_0000", "ref_0001", "ref_0002"],  # Buyer, Client, Denied
        "status=qualified": ["ref_0001"],  # Carol, qualified by the processed entry
        "sort=oldest": ["ref_0000", "ref_0001", "ref_0002"],
        f"member={seeded.ids['member']}&status=pending&q=dan": [],
    }
    for query, expected in by.items():
        assert _rows(client.get(f"/referrals?{query}").get_data(as_text=True)) == expected, query
    app.config["PAGE_SIZE"] = 2
    first = client.get("/referrals").get_data(as_text=True)
    second = client.get("/referrals?page=2").get_data(as_text=True)
    assert _rows(first) == ["ref_0002", "ref_0001"] and _rows(second) == ["ref_0000"]
    assert "Page 1 of 2" in first
    assert client.get("/referrals?status=won&sort=x&page=-4&q=" + "x" * 5000).status_code == 200


def test_a_status_change_follows_the_state_machine_and_is_audited(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    bob, dan = seeded.ids["ref_bob"], seeded.ids["ref_dan"]
    done = auth.post(f"/referrals/{bob}/status", {"status": "qualified"}, follow_redirects=True)
    page = done.get_data(as_text=True)
    assert "pending → qualified" in page and 'id="referral-status">qualified' in page
    assert "reviewer@example.com" in page.split('id="status-history"', 1)[1]
    auth.post(f"/referrals/{bob}/status", {"status": "approved"})
    final = auth.post(f"/referrals/{bob}/status", {"status": "pending"}, follow_redirects=True)
    assert "approved → pending is not allowed: The referral is approved" in final.get_data(
        as_text=True
    )
    locked = auth.post(f"/referrals/{dan}/status", {"status": "pending"}, follow_redirects=True)
    assert "is not allowed" in locked.get_data(as_text=True)
    auth.post(f"/referrals/{dan}/status", {"status": "pending", "override_denied": "yes"})
    bad = auth.post(f"/referrals/{dan}/status", {"status": "won"}, follow_redirects=True)
    assert "the status is one of" in bad.get_data(as_text=True)
    with app.extensions["sfbridge"].store.session() as s:
        assert s.get(Referral, bob).status == "approved"  # type: ignore[union-attr]
        assert s.get(Referral, dan).status == "pending"  # type: ignore[union-attr]
        moves = s.execute(
            select(ReferralStatusChange.referral_id, ReferralStatusChange.to_status)
            .where(ReferralStatusChange.actor == "reviewer@example.com")
            .order_by(ReferralStatusChange.id)
        ).all()
        assert [tuple(m) for m in moves] == [
            (bob, "qualified"),
            (bob, "approved"),
            (dan, "pending"),
        ]
        audits = s.scalars(
            select(AuditLog).where(
                AuditLog.action == "referral.status_changed",
                AuditLog.actor == "reviewer@example.com",
            )
        )
        assert [a.detail["to_status"] for a in audits] == ["qualified", "approved", "pending"]
    page = client.get(f"/referrals/{bob}").get_data(as_text=True)
    dates = page.split('id="status-dates"', 1)[1].split("</dl>", 1)[0]
    assert dates.count("<time") == 3  # created, qualified, approved; never denied
    assert client.post(f"/referrals/{bob}/status", data={"status": "pending"}).status_code == 400


def test_member_pages_list_their_referrals(
    client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    listing = client.get("/members?q=alice").get_data(as_text=True)
    assert "Alice Member" in listing and ">3</a>" in listing
    assert "Alice Member" not in client.get("/members?q=nobody").get_data(as_text=True)
    page = client.get(f"/members/{seeded.ids['member']}").get_data(as_text=True)
    assert all(f"ref_000{i}" in page for i in range(3))
    assert "pending: <strong>1</strong>" in page and "qualified: <strong>1</strong>" in page
    assert client.get("/members/999999").status_code == 404


def test_an_entry_that_matched_nobody_becomes_a_referral_under_a_member(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    auth.login()
    failed = seeded.ids["failed"]
    page = client.get(f"/entries/{failed}").get_data(as_text=True)
    assert 'id="add-referral"' in page and "Alice Member (ALICE)" in page
    nobody = auth.post(f"/entries/{failed}/add-referral", {"member_id": "x"}, follow_redirects=True)
    assert "pick the referring member" in nobody.get_data(as_text=True)
    stranger = auth.post(f"/entries/{failed}/add-referral", {"member_id": "999"})
    assert stranger.status_code == 302
    done = auth.post(
        f"/entries/{failed}/add-referral",
        {"member_id": str(seeded.ids["member"])},
        follow_redirects=True,
    )
    text = done.get_data(as_text=True)
    assert "Added referral " in text and f"entry {failed} is now processed" in text
    with app.extensions["sfbridge"].store.session() as s:
        eve = s.scalars(select(Referral).where(Referral.email == "eve@error.test")).one()
        assert (eve.first_name, eve.last_name, eve.member_id) == (
            "Eve",
            "Error",
            seeded.ids["member"],
        )
        entry = s.get(SalesEntry, failed)
        assert entry is not None and entry.referral_id == eve.id and entry.outcome != "failed"
        assert s.scalars(select(AuditLog).where(AuditLog.action == "referral.create")).one()


def test_csv_exports_stream_the_filtered_rows_safe_from_formulas(
    app: Flask, client: FlaskClient, auth: AuthActions, seeded: Seeded
) -> None:
    assert client.get("/export/referrals.csv").status_code == 302  # sign in first
    with app.extensions["sfbridge"].store.session() as s:
        bob = s.get(Referral, seeded.ids["ref_bob"])
        assert bob is not None
        bob.company = '=HYPERLINK("http://evil.test","x")'
    auth.login()
    resp = client.get("/export/referrals.csv?q=buyer&sort=name")
    assert resp.mimetype == "text/csv" and resp.is_streamed
    assert 'filename="referrals.csv"' in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [r["public_id"] for r in rows] == ["ref_0000"]  # the filters apply
    assert rows[0]["company"] == '\'=HYPERLINK("http://evil.test","x")'
    assert rows[0]["member_code"] == "ALICE"
    entries = list(
        csv.DictReader(
            io.StringIO(client.get("/export/entries.csv?result=error").get_data(as_text=True))
        )
    )
    assert [int(e["id"]) for e in entries] == [seeded.ids["failed"]]
    assert entries[0]["email"] == "eve@error.test" and entries[0]["outcome"] == "failed"
    assert [safe_cell(v) for v in ("+1", "-2", "@x", "\tA", "ok", None, 3)] == [
        "'+1", "'-2", "'@x", "'\tA", "ok", "", "3",
    ]  # fmt: skip


def test_lists_and_exports_on_both_databases(
    store: Store, app_factory: Callable[..., Flask]
) -> None:
    seeded = seed(store)
    client = app_factory(store).test_client()
    auth = AuthActions(client)
    auth.login()
    assert _rows(client.get("/referrals?q=carol").text) == ["ref_0001"]
    assert _rows(client.get("/referrals?q=alice&sort=member").text) == [
        "ref_0002", "ref_0001", "ref_0000",
    ]  # fmt: skip
    assert ">3</a>" in client.get("/members?q=ALICE").text
    rows = list(csv.DictReader(io.StringIO(client.get("/export/referrals.csv?q=dan").text)))
    assert [r["email"] for r in rows] == ["dan@denied.test"]
    done = auth.post(
        f"/referrals/{seeded.ids['ref_bob']}/status", {"status": "denied"}, follow_redirects=True
    )
    assert "pending → denied" in done.text
