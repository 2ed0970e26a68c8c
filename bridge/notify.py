"""Telling reviewers that an entry waits for them (``process.notify_on_review``), and the
admins about the bridge itself (`alert_admins`: an org over its API budget).

Sent **inline, after the commit** that put the entry in review: the decision is safe in the
database before anyone is told about it, and a notification never holds a transaction open.
``schedule(session, entry, config)`` marks the entry ``notify_state = "pending"`` in the same
transaction and registers a one-shot ``after_commit`` hook on the session; the hook sends and
records ``sent`` or ``failed`` (with the error) on the entry in a short transaction of its own.
A failure is logged and recorded, never raised: the entry is already safely in review. Entries
left ``pending`` (the process died between commit and send) or ``failed`` are sent again by
``send_pending(store)``.

Email: SMTP via ``SFBRIDGE_SMTP_HOST`` / ``SFBRIDGE_SMTP_PORT`` (25) / ``SFBRIDGE_SMTP_FROM``,
optionally ``SFBRIDGE_SMTP_USERNAME`` / ``SFBRIDGE_SMTP_PASSWORD`` and
``SFBRIDGE_SMTP_STARTTLS=1``.

Webhook: ``POST`` of a JSON body with headers ``X-SFBridge-Timestamp`` (unix seconds) and
``X-SFBridge-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` keyed with the
secret in the environment variable the config names (``webhook.secret_env``). Receivers should
recompute it over the raw body and reject old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import smtplib
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import requests
from sqlalchemy import and_, event, or_, select
from sqlalchemy.orm import Session

from bridge.config import NotifyOnReview, Webhook
from bridge.store.models import SalesEntry, User, utcnow
from bridge.vocabulary import ADMIN, NOTIFY_STATES

log = logging.getLogger(__name__)

PENDING, SENT, FAILED = NOTIFY_STATES
_SESSION_KEY = "sfbridge.notify"
WEBHOOK_TIMEOUT = 10.0
"""Seconds to wait for a webhook receiver."""
SMTP_TIMEOUT = 10.0
#: A notification `pending` for less than this may still be on its way from the process that
#: committed the entry (it sends after the commit); the resend sweep leaves it alone.
PENDING_GRACE = timedelta(seconds=2 * (WEBHOOK_TIMEOUT + SMTP_TIMEOUT) + 20)


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SmtpSettings:
        env = os.environ if environ is None else environ
        return cls(
            host=env.get("SFBRIDGE_SMTP_HOST") or None,
            port=int(env.get("SFBRIDGE_SMTP_PORT") or 25),
            sender=env.get("SFBRIDGE_SMTP_FROM") or "sfbridge@localhost",
            username=env.get("SFBRIDGE_SMTP_USERNAME") or None,
            password=env.get("SFBRIDGE_SMTP_PASSWORD") or None,
            starttls=(env.get("SFBRIDGE_SMTP_STARTTLS") or "").lower() in ("1", "true", "yes"),
        )


OWNER_REFUSED = "owner_change_refused"
"""The reason of an entry whose owner change was refused: reviewers are told, as of a review."""


def _event(entry: SalesEntry) -> str:
    refused = any(str(r).startswith(OWNER_REFUSED + ":") for r in entry.reasons or [])
    return "entry.owner_refused" if refused and entry.outcome != "review" else "entry.review"


def payload(entry: SalesEntry) -> dict[str, Any]:
    """What reviewers are told: enough to find the entry and see why it waits (or, for an
    owner change refused, `entry.owner_refused`, what was refused)."""
    decision = entry.decision or {}
    return {
        "event": _event(entry),
        "entry": {
            "id": entry.id,
            "org_connection_id": entry.org_connection_id,
            "sobject": entry.sobject_type,
            "record_id": entry.record_id,
            "change_type": entry.change_type,
            "outcome": entry.outcome,
            "reasons": list(entry.reasons or []),
            "referral_id": entry.referral_id,
            "proposed_status": decision.get("to_status"),
            "candidates": [
                {k: c.get(k) for k in ("referral_id", "public_id", "name", "score", "via")}
                for c in (entry.candidates or [])[:5]
            ],
            "api_path": f"/api/v1/entries/{entry.id}",
        },
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send_webhook(
    hook: Webhook, body: dict[str, Any], environ: dict[str, str] | None = None
) -> None:
    env = os.environ if environ is None else environ
    secret = env.get(hook.secret_env)
    if not secret:
        raise RuntimeError(f"webhook secret variable {hook.secret_env} is not set")
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    with requests.Session() as http:
        http.trust_env = False  # no proxies from the environment for a configured URL
        response = http.post(
            hook.url,
            data=raw,
            headers={
                "Content-Type": "application/json",
                "X-SFBridge-Timestamp": timestamp,
                "X-SFBridge-Signature": sign(secret, timestamp, raw),
            },
            timeout=WEBHOOK_TIMEOUT,
        )
    if response.status_code >= 300:
        raise RuntimeError(f"webhook {hook.url} answered HTTP {response.status_code}")


def send_email(recipients: list[str], body: dict[str, Any], smtp: SmtpSettings) -> None:
    if not smtp.host:
        raise RuntimeError("SFBRIDGE_SMTP_HOST is not set: cannot email reviewers")
    info = body["entry"]
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(recipients)
    refused = body["event"] == "entry.owner_refused"
    what = ": owner change refused" if refused else " needs review"
    msg["Subject"] = f"sfbridge: sales entry {info['id']}{what}"
    lines = [
        f"Sales entry {info['id']} ({info['sobject']} {info['record_id']}, "
        f"{info['change_type']}) "
        + (
            "changed the owner in Salesforce; the change was refused."
            if refused
            else "is waiting for a reviewer."
        ),
        "",
        f"Why: {', '.join(info['reasons'])}",
    ]
    if info["proposed_status"]:
        lines.append(f"Proposed status: {info['proposed_status']}")
    for c in info["candidates"]:
        lines.append(f"Candidate: {c['public_id']} {c['name']} (score {c['score']}, {c['via']})")
    lines += ["", f"API: {info['api_path']}"]
    msg.set_content("\n".join(lines))
    _smtp_send(msg, smtp)


def _smtp_send(msg: EmailMessage, smtp: SmtpSettings) -> None:
    assert smtp.host
    with smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT) as client:
        if smtp.starttls:
            client.starttls()
        if smtp.username and smtp.password:
            client.login(smtp.username, smtp.password)
        client.send_message(msg)


def deliver(
    config: NotifyOnReview, entry: SalesEntry, smtp: SmtpSettings | None = None
) -> list[str]:
    """Send every configured notification for `entry`; return the errors (empty: all sent)."""
    body = payload(entry)
    errors: list[str] = []
    if config.email:
        try:
            send_email(config.email, body, smtp or SmtpSettings.from_env())
        except (OSError, smtplib.SMTPException, RuntimeError) as exc:
            errors.append(f"email: {exc}")
    if config.webhook is not None:
        try:
            send_webhook(config.webhook, body)
        except (requests.RequestException, RuntimeError) as exc:
            errors.append(f"webhook: {exc}")
    return errors


def _record(session: Session, entry_id: int, errors: list[str]) -> None:
    entry = session.get(SalesEntry, entry_id)
    if entry is None:
        return
    entry.notify_state = FAILED if errors else SENT
    entry.notify_error = "; ".join(errors) or None
    entry.notified_at = utcnow()


def _after_commit(session: Session) -> None:
    pending = session.info.pop(_SESSION_KEY, {})
    if not pending:
        return
    bind = session.get_bind()
    for entry_id, (config, snapshot) in pending.items():
        errors = deliver(config, snapshot)
        for error in errors:
            log.warning("review notification for entry %s failed: %s", entry_id, error)
        # A session of our own: the committing one may not run SQL in this hook.
        with Session(bind) as own, own.begin():
            _record(own, entry_id, errors)


def _after_rollback(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)  # nothing committed, nothing to tell


def schedule(session: Session, entry: SalesEntry, config: NotifyOnReview) -> None:
    """Mark the entry for notification and send it once the session's transaction commits."""
    entry.notify_state = PENDING
    entry.notify_error = None
    session.flush()
    # A detached copy with what the message needs, taken now: the hook must not lazy-load.
    snapshot = SalesEntry(
        id=entry.id,
        org_connection_id=entry.org_connection_id,
        sobject_type=entry.sobject_type,
        record_id=entry.record_id,
        change_type=entry.change_type,
        outcome=entry.outcome,
        reasons=list(entry.reasons or []),
        referral_id=entry.referral_id,
        decision=dict(entry.decision or {}),
        candidates=list(entry.candidates or []),
    )
    pending = session.info.setdefault(_SESSION_KEY, {})
    pending[entry.id] = (config, snapshot)
    if not event.contains(session, "after_commit", _after_commit):
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)


def send_pending(store: Any, config_for: Any) -> int:
    """Send notifications left pending (older than PENDING_GRACE) or failed. `config_for(entry)`
    gives the entry's NotifyOnReview config (or None: not configured any more). Returns how
    many were sent."""
    sent = 0
    left_over = utcnow() - PENDING_GRACE
    with store.session() as session:
        ids = list(
            session.scalars(
                select(SalesEntry.id).where(
                    or_(
                        SalesEntry.notify_state == FAILED,
                        and_(
                            SalesEntry.notify_state == PENDING,
                            SalesEntry.processed_at < left_over,
                        ),
                    ),
                )
            )
        )
    for entry_id in ids:
        with store.session() as session:
            entry = session.get(SalesEntry, entry_id)
            config = config_for(entry) if entry is not None else None
            if entry is None or config is None:
                continue
            if entry.outcome != "review" and _event(entry) != "entry.owner_refused":
                continue  # reviewed since: nobody needs telling any more
            errors = deliver(config, entry)
            _record(session, entry_id, errors)
            sent += not errors
    return sent


# ---- alerts to the admins -----------------------------------------------------------------------


def alert_admins(
    store: Any,
    subject: str,
    text: str,
    body: dict[str, Any],
    webhook: Webhook | None = None,
    smtp: SmtpSettings | None = None,
) -> list[str]:
    """Tell the admins (every admin user by email, and `webhook` if given) about the bridge
    itself, e.g. an org over its API budget; returns the errors (logged, never raised)."""
    with store.session() as session:
        recipients = list(session.scalars(select(User.email).where(User.role == ADMIN)))
    errors: list[str] = []
    if recipients:
        settings = smtp or SmtpSettings.from_env()
        try:
            if not settings.host:
                raise RuntimeError("SFBRIDGE_SMTP_HOST is not set: cannot email the admins")
            msg = EmailMessage()
            msg["From"] = settings.sender
            msg["To"] = ", ".join(recipients)
            msg["Subject"] = f"sfbridge: {subject}"
            msg.set_content(text)
            _smtp_send(msg, settings)
        except (OSError, smtplib.SMTPException, RuntimeError) as exc:
            errors.append(f"email: {exc}")
    if webhook is not None:
        try:
            send_webhook(webhook, body)
        except (requests.RequestException, RuntimeError) as exc:
            errors.append(f"webhook: {exc}")
    for error in errors:
        log.warning("alert '%s' not sent: %s", subject, error)
    return errors
