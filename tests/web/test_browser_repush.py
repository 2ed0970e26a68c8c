"""Fix and repush in Debian's chromium against real processes: a referral whose last name is
longer than the local org's Lead.LastName (Text(80)) is pushed by a real `sfbridge worker` and
fails with STRING_TOO_LONG; the admin opens the failed push, is refused a value that still does
not fit (checked against the org's describe), types one that does and repushes; the worker
sends it, the page shows `sent` with the Salesforce id and both attempts, and the Lead in the
org has the fixed value. Screenshots go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from simple_salesforce import format_soql
from sqlalchemy import select

from bridge.store.models import OrgConnection, Program, Push, PushAttempt, Referral
from bridge.users import create_user
from bridge.writeback import jobs, queue_referral_add
from tests import services
from tests.harness import ORG, Bridge, wait_until
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


def failed_referral_push(bridge: Bridge, email: str) -> int:
    """A referral stored with a last name the org cannot take, and its pending push."""
    with bridge.store.session() as s:
        conn = s.scalar(select(OrgConnection).where(OrgConnection.name == ORG))
        assert conn is not None
        program = Program(key="main", name="Main", org_connection_id=conn.id)
        s.add(program)
        s.flush()
        referral = Referral(
            public_id="ref_fix_1",
            program_id=program.id,
            first_name="Rita",
            last_name=TOO_LONG,
            email=email,
            company="Rita Co",
        )
        s.add(referral)
        s.flush()
        return queue_referral_add(s, conn, bridge.config.orgs[ORG], referral).id


@pytest.mark.timeout(240)
def test_fix_and_repush_a_string_too_long_push_until_it_is_sent(
    chromium: str, clean_devorg: Any, redis_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    bridge = Bridge(tmp_path / "bridge", clean_devorg, redis_url)
    bridge.install()
    with bridge.store.session() as s:
        create_user(s, "admin@example.com", PASSWORD, "admin", actor="test")
    email = "rita.fix@example.com"
    push_id = failed_referral_push(bridge, email)
    port = services.free_port()
    bridge.start("web", "web", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    bridge.start("worker", "worker")
    base = f"http://127.0.0.1:{port}"
    sales = clean_devorg.sf("sales")

    def leads() -> list[dict[str, Any]]:
        soql = format_soql("SELECT Id, LastName FROM Lead WHERE Email = {}", email)
        return list(sales.query_all(soql)["records"])

    try:
        wait_until(
            lambda: "Listening at" in bridge.log("web"), 60, "the web", lambda: bridge.log("web")
        )
        jobs.enqueue_push(redis.Redis.from_url(redis_url), [push_id])
        wait_until(
            lambda: _push(bridge, push_id).state == "failed",
            60,
            "the worker to send the push",
            lambda: bridge.log("worker"),
        )
        first = _push(bridge, push_id)
        assert (first.error_code, first.error_fields) == ("STRING_TOO_LONG", ["LastName"])
        assert leads() == []

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
                expect(attempts.nth(1)).to_contain_text(sent.sf_id)
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
        [lead] = leads()
        assert lead["LastName"] == "Fixed" and lead["Id"] == sent.sf_id
    finally:
        bridge.close()
