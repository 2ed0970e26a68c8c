"""Fix and repush, and bulk repush, in Debian's chromium against real processes.

A referral whose last name is longer than the local org's Lead.LastName (Text(80)) is pushed
by a real `sfbridge worker` and fails with STRING_TOO_LONG; the admin opens the failed push, is
refused a value that still does not fit (checked against the org's describe), types one that
does and repushes; the worker sends it, the page shows `sent` with the Salesforce id and both
attempts, and the Lead in the org has the fixed value. And the pushes a validation rule
failed, filtered on the report and repushed together once the org's admin turned the rule
off. Screenshots go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from simple_salesforce import format_soql
from sqlalchemy import select

from bridge.store.models import AuditLog, OrgConnection, Program, Push, PushAttempt, Referral
from bridge.users import create_user
from bridge.writeback import jobs, queue_referral_add
from tests import services
from tests.harness import ORG, Bridge, wait_until
from tests.test_strict_e2e import PHONE_REQUIRED
from tests.web.seed import PASSWORD
from tests.web.test_browser import chromium
from tests.web.test_browser_console import _browser, _fits, _page, _shot, _sign_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
__all__ = ["chromium"]  # a fixture

TOO_LONG = "L" * 81  # Lead.LastName is Text(80) in the local org


def _push(bridge: Bridge, push_id: int) -> Push:
    with bridge.store.session() as s:
        push = s.get(Push, push_id)
        assert push is not None
        return push


def referral_pushes(bridge: Bridge, referrals: list[dict[str, Any]]) -> list[int]:
    """Referrals stored as given (values the org may refuse) and their pending pushes."""
    with bridge.store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == ORG))
        assert conn is not None
        program = Program(key="main", name="Main", org_connection_id=conn.id)
        s.add(program)
        s.flush()
        ids = []
        for n, values in enumerate(referrals, 1):
            referral = Referral(
                public_id=f"ref_web_{n}", program_id=program.id, first_name="Rita", **values
            )
            s.add(referral)
            s.flush()
            ids.append(queue_referral_add(s, conn, bridge.config.orgs[ORG], referral).id)
        return ids


def started(bridge: Bridge) -> str:
    """An admin, then `sfbridge web` and `sfbridge worker`; the web's base URL."""
    bridge.install()
    with bridge.store.session() as s:
        create_user(s, "admin@example.com", PASSWORD, "admin", actor="test")
    port = services.free_port()
    bridge.start("web", "web", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    bridge.start("worker", "worker")
    wait_until(
        lambda: "Listening at" in bridge.log("web"), 60, "the web", lambda: bridge.log("web")
    )
    return f"http://127.0.0.1:{port}"


def sent_by_the_worker(bridge: Bridge, push_ids: list[int], state: str, redis_url: str) -> None:
    jobs.enqueue_push(redis.Redis.from_url(redis_url), push_ids)
    wait_until(
        lambda: all(_push(bridge, p).state == state for p in push_ids),
        60,
        f"the worker to send pushes {push_ids} ({state})",
        lambda: bridge.log("worker"),
    )


def leads(org: Any, emails: list[str]) -> list[dict[str, Any]]:
    soql = format_soql("SELECT Id, Email, LastName FROM Lead WHERE Email IN {}", emails)
    return list(org.sf("sales").query_all(soql)["records"])


@pytest.mark.timeout(240)
def test_fix_and_repush_a_string_too_long_push_until_it_is_sent(
    chromium: str, clean_devorg: Any, redis_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    bridge = Bridge(tmp_path / "bridge", clean_devorg, redis_url)
    email = "rita.fix@example.com"
    try:
        base = started(bridge)
        [push_id] = referral_pushes(
            bridge, [{"last_name": TOO_LONG, "email": email, "company": "Rita Co"}]
        )
        sent_by_the_worker(bridge, [push_id], "failed", redis_url)
        first = _push(bridge, push_id)
        assert (first.error_code, first.error_fields) == ("STRING_TOO_LONG", ["LastName"])
        assert leads(clean_devorg, [email]) == []

        with sync_playwright() as pw:
            browser = _browser(pw, chromium)
            try:
                page = _page(browser)
                _sign_in(page, base, "admin@example.com")
                page.goto(base + "/reports/pushes?state=failed")
                row = page.locator(f"tr.push:has(a[href='/reports/pushes/{push_id}'])")
                expect(row).to_contain_text("STRING_TOO_LONG")
                expect(row).to_contain_text("Rita")  # the referral by name, not a bare id
                _shot(page, "r01-pushes-failed")
                _fits(page)  # an 81-character name wraps
                row.locator("text=Fix and repush").click()

                # Salesforce's error beside the field it named, the payload it sent.
                expect(page.locator("h1 .badge")).to_have_text("failed")
                field = page.locator("#field-LastName")
                beside = page.locator("form.fix tr:has(#field-LastName) .error")
                expect(beside).to_contain_text("STRING_TOO_LONG")
                expect(page.locator("details pre")).to_contain_text(TOO_LONG)
                _shot(page, "r02-push-failed")
                _fits(page)

                # A value that still does not fit is refused before anything is sent.
                field.fill("M" * 81)
                page.click("#repush")
                expect(page.locator(".flash.error")).to_contain_text(
                    f"Push {push_id} was not repushed: LastName"
                )
                expect(page.locator("h1 .badge")).to_have_text("failed")
                _shot(page, "r03-push-refused")
                assert _push(bridge, push_id).attempts == 1

                field.fill("Fixed")
                page.click("#repush")
                expect(page.locator(".flash.success")).to_contain_text(
                    f"Push {push_id} will be sent again with LastName changed (queued for sending)"
                )
                wait_until(
                    lambda: _push(bridge, push_id).state == "sent",
                    60,
                    "the worker to send the repush",
                    lambda: bridge.log("worker"),
                )
                page.reload()
                sent = _push(bridge, push_id)
                expect(page.locator("h1 .badge")).to_have_text("sent")
                assert sent.sf_id
                expect(page.locator("dl.decision")).to_contain_text(sent.sf_id)
                attempts = page.locator("table.list tbody tr")
                expect(attempts).to_have_count(2)
                expect(attempts.nth(0)).to_contain_text("STRING_TOO_LONG")
                expect(attempts.nth(1)).to_contain_text("sent")
                expect(attempts.nth(1).locator("td").first).to_have_text("2")  # numbered on
                expect(attempts.nth(1)).to_contain_text(sent.sf_id)
                with bridge.store.session() as s:  # "also save on the referral" was ticked
                    referral = s.get(Referral, sent.referral_id)
                    assert referral is not None and referral.last_name == "Fixed"
                _shot(page, "r04-push-sent")
                _fits(page)
            finally:
                browser.close()

        with bridge.store.session() as s:
            states = list(
                s.scalars(
                    select(PushAttempt.state)
                    .where(PushAttempt.push_id == push_id)
                    .order_by(PushAttempt.id)
                )
            )
        assert states == ["failed", "sent"]
        [lead] = leads(clean_devorg, [email])
        assert lead["LastName"] == "Fixed" and lead["Id"] == sent.sf_id
    finally:
        bridge.close()


@pytest.mark.timeout(240)
def test_bulk_repush_of_the_pushes_a_validation_rule_failed(
    chromium: str, clean_devorg: Any, redis_url: str, tmp_path: Path
) -> None:
    """Three referrals fail on the org's validation rule, one on a value too long; once the
    org's admin turns the rule off, the failed pushes of that error code are filtered and
    repushed together, through the confirmation, and the worker sends them."""
    from playwright.sync_api import expect, sync_playwright

    bridge = Bridge(tmp_path / "bridge", clean_devorg, redis_url)
    clean_devorg.control("strict", {"validation_rules": [PHONE_REQUIRED]})
    emails = [f"rita{n}@example.com" for n in range(1, 5)]
    rule = "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    try:
        base = started(bridge)
        *no_phone, too_long = referral_pushes(
            bridge,
            [{"last_name": f"Referred{n}", "email": e} for n, e in enumerate(emails[:3], 1)]
            + [{"last_name": TOO_LONG, "email": emails[3], "phone": "+1 555 0100"}],
        )
        sent_by_the_worker(bridge, [*no_phone, too_long], "failed", redis_url)
        assert [_push(bridge, p).error_code for p in no_phone] == [rule] * 3
        assert _push(bridge, too_long).error_code == "STRING_TOO_LONG"
        clean_devorg.control("strict", {"validation_rules": []})  # the org's admin fixes it

        with sync_playwright() as pw:
            browser = _browser(pw, chromium)
            try:
                page = _page(browser)
                _sign_in(page, base, "admin@example.com")
                page.goto(base + "/reports/pushes?state=failed")
                expect(page.locator("#repush-matching")).to_have_text("Repush all 4 matching…")
                page.select_option("form.filters select[name=org]", ORG)
                page.select_option("form.filters select[name=code]", rule)
                page.select_option("form.filters select[name=object]", "Lead")
                page.click("form.filters button")
                expect(page.locator("tr.push")).to_have_count(3)
                expect(page.locator("#repush-matching")).to_have_text("Repush all 3 matching…")
                expect(page.locator("#repush-matching-form")).to_contain_text(f"{rule} × 3")
                _shot(page, "r05-pushes-filtered")
                _fits(page)

                page.click("#repush-matching")
                expect(page.locator("h1")).to_have_text("Confirm: repush 3 pushes")
                expect(page.locator(".effects")).to_have_text(
                    f"This will send 3 pushes again: {rule} × 3."
                )
                expect(page.locator("input[name=push_id]")).to_have_count(3)
                _shot(page, "r06-bulk-repush-confirm")
                _fits(page)
                assert [_push(bridge, p).state for p in no_phone] == ["failed"] * 3  # not yet

                page.click("#confirm-repush")
                expect(page.locator(".flash.success")).to_have_text(
                    f"Repushed 3 pushes ({rule} × 3); queued for sending."
                )
                wait_until(
                    lambda: all(_push(bridge, p).state == "sent" for p in no_phone),
                    60,
                    "the worker to send the repushed pushes",
                    lambda: bridge.log("worker"),
                )
                page.goto(base + "/reports/pushes?state=sent")
                expect(page.locator("tr.push")).to_have_count(3)
                page.goto(base + "/reports/pushes?state=failed")
                expect(page.locator("tr.push")).to_have_count(1)
                expect(page.locator("tr.push")).to_contain_text("STRING_TOO_LONG")
                _shot(page, "r07-after-bulk-repush")
            finally:
                browser.close()
        assert _push(bridge, too_long).state == "failed"  # another error code: left alone
        assert sorted(r["Email"] for r in leads(clean_devorg, emails)) == emails[:3]
        with bridge.store.session() as s:
            [bulk] = s.scalars(select(AuditLog).where(AuditLog.action == "push.bulk_repush"))
            assert bulk.actor == "admin@example.com" and bulk.detail["pushes"] == no_phone
    finally:
        bridge.close()
