"""Review notifications: a real SMTP server (aiosmtpd) and a real HTTP receiver that checks the
webhook signature. Sent after the commit; failures are recorded on the entry, never raised."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bridge import notify
from bridge.config import OrgConfig
from bridge.receiver.service import process_entries, process_entry
from bridge.store import Store
from bridge.store.models import Program, Referral, SalesEntry
from tests.factories import org_config
from tests.services import free_port

SECRET = "test-webhook-secret"


class _Collect:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Collect]:
    handler = _Collect()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SFBRIDGE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SFBRIDGE_SMTP_PORT", str(port))
    monkeypatch.setenv("SFBRIDGE_SMTP_FROM", "sfbridge@example.com")
    yield handler
    controller.stop()


class _Hooks:
    """A webhook receiver that verifies the signature like a real integration would."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 204

    def verify(self, headers: Any, body: bytes) -> bool:
        ts = headers["X-SFBridge-Timestamp"]
        want = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers["X-SFBridge-Signature"], f"sha256={want}")


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, _Hooks]]:
    hooks = _Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = hooks.verify(self.headers, body)
            hooks.received.append({"valid": ok, "body": json.loads(body)})
            self.send_response(hooks.status if ok else 401)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("SFBRIDGE_TEST_HOOK_SECRET", SECRET)
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/review", hooks
    server.shutdown()
    server.server_close()


def org(notify_on_review: dict[str, Any]) -> OrgConfig:
    process = {"auto_process_fuzzy": False, "notify_on_review": notify_on_review}
    return org_config({"process": process})


def review_entry(
    store: Store, config: OrgConfig, *, fail: bool = False, batched: bool = False
) -> int:
    """Process an entry that goes to review (a fuzzy match with auto_process_fuzzy off);
    `batched`: through the worker's batch path (the entry written once, decided)."""
    with store.session() as s:
        program = Program(key="main", name="Main")
        s.add(program)
        s.flush()
        s.add(
            Referral(
                public_id="R1",
                program_id=program.id,
                first_name="Jane",
                last_name="Doe",
                email="jane@example.com",
            )
        )
    lead = {
        "Id": "00Q000000000001AAA",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Email": "jane@example.com",
        "Status": "Qualified",
        "LastModifiedById": "005X",
    }
    with store.session() as s:
        entry = SalesEntry(
            source="api",
            sobject_type="Lead",
            record_id=lead["Id"],
            change_type="updated",
            records={"Lead": lead},
            outcome="new",
        )
        if batched:
            process_entries(s, [entry], config)
        else:
            s.add(entry)
            s.flush()
            process_entry(s, entry, config)
        assert entry.outcome == "review"
        assert entry.notify_state == "pending"  # recorded in the decision's transaction
        if fail:
            raise RuntimeError("the caller's transaction fails after processing")
        return entry.id


def notify_state(store: Store, entry_id: int) -> tuple[str | None, str | None]:
    with store.session() as s:
        e = s.get(SalesEntry, entry_id)
        assert e is not None
        return e.notify_state, e.notify_error


def test_email_and_signed_webhook_after_commit(
    store: Store, smtp: _Collect, webhook: tuple[str, _Hooks]
) -> None:
    url, hooks = webhook
    config = org(
        {
            "email": ["reviewers@example.com"],
            "webhook": {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"},
        }
    )
    eid = review_entry(store, config)
    # Sent inline once the commit happened, so already there: no waiting needed.
    assert notify_state(store, eid) == ("sent", None)
    assert len(smtp.messages) == 1
    envelope = smtp.messages[0]
    assert envelope.rcpt_tos == ["reviewers@example.com"]
    msg = message_from_bytes(envelope.content)
    assert msg["Subject"] == f"sfbridge: sales entry {eid} needs review"
    assert "review_fuzzy_match" in msg.get_payload()
    assert [h["valid"] for h in hooks.received] == [True]
    body = hooks.received[0]["body"]
    assert body["event"] == "entry.review"
    assert body["entry"]["id"] == eid and "review_fuzzy_match" in body["entry"]["reasons"]
    assert body["entry"]["candidates"][0]["public_id"] == "R1"


def test_a_review_decided_in_a_batch_is_sent_after_commit(
    store: Store, webhook: tuple[str, _Hooks]
) -> None:
    url, hooks = webhook
    config = org({"webhook": {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"}})
    eid = review_entry(store, config, batched=True)
    assert [h["valid"] for h in hooks.received] == [True]
    assert notify_state(store, eid) == ("sent", None)


def test_failures_are_recorded_and_sent_again_later(
    store: Store, webhook: tuple[str, _Hooks], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, hooks = webhook
    hooks.status = 500
    monkeypatch.setenv("SFBRIDGE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SFBRIDGE_SMTP_PORT", str(free_port()))  # nobody listens there
    config = org(
        {
            "email": ["reviewers@example.com"],
            "webhook": {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"},
        }
    )
    eid = review_entry(store, config)
    state, error = notify_state(store, eid)
    assert state == "failed"
    assert error is not None and "email:" in error and "HTTP 500" in error
    with store.session() as s:
        e = s.get(SalesEntry, eid)
        assert e is not None and e.outcome == "review"  # the decision stands
    # The receiver is fixed; the sweep sends what failed (email is still down: recorded).
    hooks.status = 204
    notify.send_pending(store, lambda entry: config.receiver.process.notify_on_review)
    state, error = notify_state(store, eid)
    assert [h["valid"] for h in hooks.received] == [True, True]
    assert state == "failed" and error is not None and "webhook" not in error


def test_missing_secret_is_a_recorded_failure(
    store: Store, webhook: tuple[str, _Hooks], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, hooks = webhook
    monkeypatch.delenv("SFBRIDGE_TEST_HOOK_SECRET")
    eid = review_entry(
        store, org({"webhook": {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"}})
    )
    assert notify_state(store, eid) == (
        "failed",
        "webhook: webhook secret variable SFBRIDGE_TEST_HOOK_SECRET is not set",
    )
    assert hooks.received == []


def test_nothing_is_sent_when_the_transaction_rolls_back(
    store: Store, smtp: _Collect, webhook: tuple[str, _Hooks]
) -> None:
    url, hooks = webhook
    config = org(
        {
            "email": ["reviewers@example.com"],
            "webhook": {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"},
        }
    )
    with pytest.raises(RuntimeError, match="transaction fails"):
        review_entry(store, config, fail=True)
    with store.session() as s:
        assert s.scalars(select(SalesEntry)).all() == []
    assert smtp.messages == [] and hooks.received == []


def test_the_worker_sweeper_resends_failed_notifications_once_per_interval(
    sqlite_store: Store, webhook: tuple[str, _Hooks], redis_client: Any
) -> None:
    from bridge import processes
    from bridge.config import BridgeConfig
    from bridge.store.models import OrgConnection

    url, hooks = webhook
    hooks.status = 500
    org_config = org({"webhook": {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"}})
    eid = review_entry(sqlite_store, org_config)
    assert notify_state(sqlite_store, eid)[0] == "failed"
    with sqlite_store.session() as s:
        conn = OrgConnection(name="acme", login_url="https://x", auth_method="jwt")
        s.add(conn)
        s.flush()
        entry = s.get(SalesEntry, eid)
        assert entry is not None
        entry.org_connection_id = conn.id
    config = BridgeConfig(orgs={"acme": org_config})

    hooks.status = 204  # the receiver is back
    assert processes.resend_notifications(sqlite_store, redis_client, config) == 1
    assert notify_state(sqlite_store, eid) == ("sent", None)
    hooks.status = 500
    with sqlite_store.session() as s:
        entry = s.get(SalesEntry, eid)
        assert entry is not None
        entry.notify_state = "failed"
    # Within the interval another worker's sweeper does not send again.
    assert processes.resend_notifications(sqlite_store, redis_client, config) == 0
    assert len(hooks.received) == 2


def test_a_notification_still_being_sent_is_not_sent_again(
    store: Store, webhook: tuple[str, _Hooks]
) -> None:
    # `pending` just after the commit means the committing process is sending it right now
    # (after_commit); the resend sweep leaves it alone until it is clearly left over.
    from datetime import timedelta

    from bridge.store.models import utcnow

    url, hooks = webhook
    config = org({"webhook": {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"}})
    eid = review_entry(store, config)
    assert len(hooks.received) == 1
    with store.session() as s:
        entry = s.get(SalesEntry, eid)
        assert entry is not None
        entry.notify_state, entry.processed_at = "pending", utcnow()
    resend = lambda entry: config.receiver.process.notify_on_review  # noqa: E731
    assert notify.send_pending(store, resend) == 0
    assert len(hooks.received) == 1
    with store.session() as s:
        entry = s.get(SalesEntry, eid)
        assert entry is not None
        entry.processed_at = utcnow() - timedelta(minutes=5)  # its process died before sending
    assert notify.send_pending(store, resend) == 1
    assert len(hooks.received) == 2
    assert notify_state(store, eid) == ("sent", None)


def test_an_owner_change_refused_tells_the_reviewers_and_is_sent_again_when_it_failed(
    store: Store, smtp: _Collect, webhook: tuple[str, _Hooks]
) -> None:
    """Ownership sync refuses an OwnerId change of a person with a future demo: the same
    notification path as a review, with its own event and subject."""
    from datetime import timedelta

    from bridge.store.models import Demo, utcnow
    from tests.factories import connected_org

    url, hooks = webhook
    alice, bob = "005000000000001AAA", "005000000000002AAA"
    hook = {"url": url, "secret_env": "SFBRIDGE_TEST_HOOK_SECRET"}
    config = org_config(
        {"process": {"notify_on_review": {"email": ["reviewers@example.com"], "webhook": hook}}},
        users={"alice": {"salesforce_id": alice}, "bob": {"salesforce_id": bob}},
    )
    with store.session() as s:
        conn = connected_org(s)
        program = Program(key="main", name="Main", org_connection_id=conn.id)
        s.add(program)
        s.flush()
        referral = Referral(public_id="R1", program_id=program.id, last_name="Doe", owner="alice")
        s.add(referral)
        s.flush()
        s.add(
            Demo(
                org_connection_id=conn.id, client_id="d1", referral_id=referral.id, digest="x",
                body={}, state="set", scheduled_at=utcnow() + timedelta(days=3),
            )
        )  # fmt: skip
        conn_id, referral_id = conn.id, referral.id
    hooks.status = 500  # the first send fails
    lead = {"Id": "00Q000000000001AAA", "LastName": "Doe", "Referral_ID__c": "R1", "Status": "Open",
            "OwnerId": bob, "LastModifiedById": "005X"}  # fmt: skip
    with store.session() as s:
        entry = SalesEntry(
            source="api", org_connection_id=conn_id, sobject_type="Lead",
            record_id=lead["Id"], change_type="updated", records={"Lead": lead},
        )  # fmt: skip
        s.add(entry)
        s.flush()
        process_entry(s, entry, config)
        assert entry.outcome == "processed", (entry.reasons, entry.error)
        assert entry.reasons[-1].startswith("owner_change_refused:1 future event, first demo ")
        eid = entry.id
    with store.session() as s:
        r = s.get(Referral, referral_id)
        assert r is not None and r.owner == "alice"  # the owner stays
    assert notify_state(store, eid)[0] == "failed"
    msg = message_from_bytes(smtp.messages[0].content)
    assert msg["Subject"] == f"sfbridge: sales entry {eid}: owner change refused"
    assert "the change was refused" in msg.get_payload()
    # the sweep sends it again, though the entry is not in review
    hooks.status = 204
    notify.send_pending(store, lambda entry: config.receiver.process.notify_on_review)
    assert notify_state(store, eid) == ("sent", None)
    assert [h["body"]["event"] for h in hooks.received] == ["entry.owner_refused"] * 2
