"""Against `sfbridge web` under gunicorn on loopback: parallel guesses on PostgreSQL with four
workers (ASVS 2.2.1), and proxy headers trusted only with SFBRIDGE_TRUST_PROXY."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from bridge.store import Store
from bridge.store.models import AuditLog
from tests.web.seed import seed
from tests.web.webproc import csrf_of, running_web


def test_thirty_parallel_guesses_get_at_most_five_password_checks(
    postgres_store: Store, redis_url: str, tmp_path: Path
) -> None:
    seed(postgres_store)
    with running_web(postgres_store.url, tmp_path, workers=4, SFBRIDGE_REDIS_URL=redis_url) as base:
        browsers = []
        for _ in range(30):
            browser = requests.Session()
            browser.trust_env = False
            browsers.append((browser, csrf_of(browser, base)))
        start = threading.Barrier(30)
        statuses: list[int] = []

        def guess(browser: requests.Session, token: str, n: int) -> None:
            start.wait()
            resp = browser.post(
                base + "/auth/login",
                data={
                    "email": "reviewer@example.com",
                    "password": f"guess {n}",
                    "csrf_token": token,
                },
                allow_redirects=False,
                timeout=60,
            )
            statuses.append(resp.status_code)

        threads = [
            threading.Thread(target=guess, args=(b, t, n)) for n, (b, t) in enumerate(browsers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(statuses) == 30 and set(statuses) <= {401, 429}, statuses
    checked = statuses.count(401)
    with postgres_store.session() as s:
        audited = s.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "login.failed"))
    assert 1 <= checked <= 5 and audited == checked, statuses


@pytest.mark.parametrize("trusted", [False, True])
def test_forwarded_headers_are_trusted_only_with_trust_proxy(
    sqlite_store: Store, redis_url: str, tmp_path: Path, trusted: bool
) -> None:
    seed(sqlite_store)
    env = {"SFBRIDGE_REDIS_URL": redis_url}
    if trusted:
        env["SFBRIDGE_TRUST_PROXY"] = "1"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.50"}
    with running_web(sqlite_store.url, tmp_path, **env) as base:
        browser = requests.Session()
        browser.trust_env = False
        page = browser.get(base + "/auth/login", headers=forwarded, timeout=10)
        cookie = page.headers["Set-Cookie"]
        token = csrf_of(browser, base)
        browser.post(
            base + "/auth/login",
            data={"email": "reviewer@example.com", "password": "wrong", "csrf_token": token},
            headers=forwarded,
            timeout=10,
        )
    with sqlite_store.session() as s:
        seen_from = s.scalar(select(AuditLog.object_id).where(AuditLog.action == "login.failed"))
    if trusted:
        assert "Secure" in cookie and seen_from == "203.0.113.50"
    else:  # a request from 127.0.0.1 claiming HTTPS and another client is not believed
        assert "Secure" not in cookie and seen_from == "127.0.0.1"
