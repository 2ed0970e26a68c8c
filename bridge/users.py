"""Reviewer/admin accounts and API tokens (used by the CLI, the admin pages and the API).

Passwords are hashed with werkzeug (scrypt by default). An account can be deactivated and
reactivated, change role, and have its password changed or reset; each is audited, and
deactivating or setting a password ends the user's browser sessions (`end_sessions`, ASVS
3.3.1). API tokens are random, shown once, and only their SHA-256 is stored; a token carries
scopes, can expire, and can be revoked.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from bridge import audit, throttle
from bridge.errors import UsageError
from bridge.store.models import ApiToken, User, WebSession, utcnow
from bridge.vocabulary import ADMIN, ADMIN_SCOPES, ROLES, SCOPES

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "sfb_"  # noqa: S105 - a recognisable prefix, not a secret

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hash_password(password: str, method: str = "scrypt") -> str:
    return generate_password_hash(password, method=method)


@cache
def _dummy_hash(method: str) -> str:
    # Compared against when the account does not exist: the same algorithm and cost as a real
    # account's hash, so the time a sign-in takes does not reveal whether the account exists.
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def verify_password(user: User | None, password: str, method: str = "scrypt") -> bool:
    """Whether `password` is `user`'s; for no user, the same hash work and False."""
    if user is None:
        check_password_hash(_dummy_hash(method), password)
        return False
    return check_password_hash(user.password_hash, password)


def _check_text(value: str, field: str, max_length: int = 255) -> None:
    """Names and emails are one line of printable text that fits its column."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UsageError(f"the {field} must not contain control characters", fields=[field])
    if len(value) > max_length:
        raise UsageError(f"the {field} is longer than {max_length} characters", fields=[field])


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
            fields=["password"],
        )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}, not '{role}'", fields=["role"])


def find_user(session: Session, email_or_id: str | int) -> User:
    """The user with this email (any case) or id, or a UsageError."""
    if isinstance(email_or_id, int):
        user = session.get(User, email_or_id)
    else:
        user = session.scalar(select(User).where(User.email == email_or_id.strip().lower()))
    if user is None:
        raise UsageError(f"no user {email_or_id}", code="not_found")
    return user


def create_user(
    session: Session,
    email: str,
    password: str,
    role: str,
    *,
    name: str = "",
    actor: str = "cli",
    hash_method: str = "scrypt",
) -> User:
    email = email.strip().lower()
    _check_text(email, "email")
    _check_text(name, "name")
    if not _EMAIL.match(email):
        raise UsageError(f"'{email}' is not an email address", fields=["email"])
    _check_role(role)
    _check_password(password)
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise UsageError(f"a user with email {email} already exists", fields=["email"])
    user = User(
        email=email, name=name, role=role, password_hash=hash_password(password, hash_method)
    )
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", "user", user.id, email=email, role=role)
    return user


def end_sessions(session: Session, user_id: int, reason: str) -> int:
    """End every open browser session of the user (they must sign in again); how many."""
    result = session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=reason)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def set_active(session: Session, user: User, active: bool, *, actor: str) -> User:
    """Deactivate (sessions end, tokens stop working) or reactivate an account."""
    if user.active == active:
        return user
    if not active:
        _keep_an_admin(session, user)
    user.active = active
    ended = 0 if active else end_sessions(session, user.id, "deactivated")
    throttle.clear(session, throttle.account_key(user.email))
    action = "user.reactivate" if active else "user.deactivate"
    audit.record(session, actor, action, "user", user.id, email=user.email, sessions_ended=ended)
    return user


def set_role(session: Session, user: User, role: str, *, actor: str) -> User:
    _check_role(role)
    if user.role == role:
        return user
    if role != ADMIN:
        _keep_an_admin(session, user)
    before, user.role = user.role, role
    audit.record(
        session, actor, "user.role", "user", user.id, email=user.email, role=role, before=before
    )
    return user


def set_password(
    session: Session,
    user: User,
    password: str,
    *,
    actor: str,
    hash_method: str = "scrypt",
    keep_session_id: int | None = None,
) -> int:
    """Set a new password (a reset by an admin, or the user's own change) and end the user's
    sessions (all but `keep_session_id`, the one that made the change); how many ended."""
    _check_password(password)
    user.password_hash = hash_password(password, hash_method)
    throttle.clear(session, throttle.account_key(user.email))  # a reset lifts a sign-in delay
    query = update(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
    if keep_session_id is not None:
        query = query.where(WebSession.id != keep_session_id)
    ended = session.execute(query.values(ended_at=utcnow(), end_reason="password_changed"))
    count = int(ended.rowcount or 0)  # type: ignore[attr-defined]
    action = "user.password_change" if actor == user.email else "user.password_reset"
    audit.record(session, actor, action, "user", user.id, email=user.email, sessions_ended=count)
    return count


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse to deactivate or demote the last active admin (nobody could manage users)."""
    if user.role != ADMIN or not user.active:
        return
    others = session.scalar(
        select(User.id).where(User.role == ADMIN, User.active.is_(True), User.id != user.id)
    )
    if others is None:
        raise UsageError(f"{user.email} is the last active admin: make another admin first")


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    session: Session,
    user: User,
    name: str,
    scopes: list[str],
    *,
    actor: str,
    expires_at: datetime | None = None,
) -> NewToken:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise UsageError(
            f"unknown scope(s) {', '.join(unknown)}; allowed: {', '.join(SCOPES)}",
            fields=["scopes"],
        )
    if not scopes:
        raise UsageError("give the token at least one scope", fields=["scopes"])
    beyond = sorted(set(scopes) & ADMIN_SCOPES) if user.role != ADMIN else []
    if beyond:
        raise UsageError(
            f"{user.email} is a {user.role}: scope(s) {', '.join(beyond)} need an admin",
            fields=["scopes"],
        )
    if not name.strip():
        raise UsageError("give the token a name (what uses it)", fields=["name"])
    _check_text(name.strip(), "name")
    taken = session.scalar(
        select(ApiToken.id).where(ApiToken.name == name.strip(), ApiToken.revoked_at.is_(None))
    )
    if taken is not None:
        raise UsageError(
            f"a token named '{name.strip()}' exists; revoke it or pick another name",
            fields=["name"],
            code="conflict",
        )
    if expires_at is not None and expires_at <= utcnow():
        raise UsageError("the expiry must be in the future", fields=["expires"])
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name.strip(),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_hash=token_hash(secret),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        actor,
        "token.create",
        "api_token",
        token.id,
        name=token.name,
        scopes=token.scopes,
        user=user.email,
        expires_at=expires_at.isoformat() if expires_at else None,
    )
    return NewToken(token, secret)


def revoke_token(session: Session, token_id: int, *, actor: str) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise UsageError(f"no API token with id {token_id}", code="not_found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(session, actor, "token.revoke", "api_token", token.id, name=token.name)
    return token


def find_token(session: Session, secret: str) -> ApiToken | None:
    """The token for `secret` if it exists and is not revoked (it may have expired:
    `token_expired`), else None."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(secret)))
    if token is None or token.revoked_at is not None:
        return None
    return token


def token_expired(token: ApiToken, now: datetime | None = None) -> bool:
    return token.expires_at is not None and token.expires_at <= (now or utcnow())
