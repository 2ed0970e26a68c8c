"""Server-side browser sessions (ASVS 3.3.1, 3.3.2) kept in the store's `web_sessions`.

The signed cookie carries only a random session id (and the CSRF token); the store keeps the
id's SHA-256, the user, when it started, was last seen and must end at the latest. A session
is valid while it is not ended, was used within the idle timeout and is younger than its
absolute lifetime. Signing out, an admin, deactivating the user or setting their password end
it on the server, so a cookie copied before is refused afterwards.

Why the store and not Redis: the sessions survive a Redis restart or loss (Redis is a queue
here, not a database), they can be ended per user in the same transaction that deactivates the
account or changes its password, and ended sessions stay on record next to the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge import defaults
from bridge.store.models import User, WebSession


@dataclass(frozen=True)
class Lifetime:
    idle_seconds: float
    max_seconds: float


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def begin(s: Session, user: User, ip: str | None, lifetime: Lifetime, now: datetime) -> str:
    """Start a session for `user`; the random id to put in the cookie (shown nowhere else)."""
    session_id = secrets.token_urlsafe(32)
    s.add(
        WebSession(
            id_hash=id_hash(session_id),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=lifetime.max_seconds),
            ip=ip,
        )
    )
    return session_id


def resume(
    s: Session, session_id: str, lifetime: Lifetime, now: datetime
) -> tuple[WebSession, User] | str:
    """The live session and its user, or why there is none (`unknown`, `ended`, `idle`,
    `expired`, `inactive_user`); an idle or expired session is ended on the way."""
    row = s.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.id_hash == id_hash(session_id))
    ).one_or_none()
    if row is None:
        return "unknown"
    web_session, user = row[0], row[1]
    if web_session.ended_at is not None:
        return "ended"
    reason = None
    if web_session.expires_at <= now:
        reason = "expired"
    elif web_session.last_seen_at <= now - timedelta(seconds=lifetime.idle_seconds):
        reason = "idle"
    elif not user.active:
        reason = "inactive_user"
    if reason is not None:
        end(web_session, reason, now)
        return reason
    if (now - web_session.last_seen_at).total_seconds() >= defaults.SESSION_TOUCH_EVERY_SECONDS:
        web_session.last_seen_at = now
    return web_session, user


def end(web_session: WebSession, reason: str, now: datetime) -> None:
    if web_session.ended_at is None:
        web_session.ended_at = now
        web_session.end_reason = reason


def end_by_id(s: Session, session_id: str, reason: str, now: datetime) -> None:
    web_session = s.scalar(select(WebSession).where(WebSession.id_hash == id_hash(session_id)))
    if web_session is not None:
        end(web_session, reason, now)
