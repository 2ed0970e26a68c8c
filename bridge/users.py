"""Reviewer/admin accounts and API tokens (used by the CLI, the admin pages and the API).

Passwords are hashed with werkzeug (scrypt by default). API tokens are random, shown once, and
only their SHA-256 is stored; a token carries scopes and can be revoked.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from bridge import audit
from bridge.errors import UsageError
from bridge.store.models import ApiToken, User, utcnow
from bridge.vocabulary import ADMIN, ADMIN_SCOPES, ROLES, SCOPES

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "sfb_"  # noqa: S105 - a recognisable prefix, not a secret

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A hash to compare against when the account does not exist, so timing does not reveal it.
_DUMMY_HASH = generate_password_hash("not-a-real-password", method="pbkdf2:sha256:1000")


def hash_password(password: str, method: str = "scrypt") -> str:
    return generate_password_hash(password, method=method)


def verify_password(user: User | None, password: str) -> bool:
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(user.password_hash, password)


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
    if not _EMAIL.match(email):
        raise UsageError(f"'{email}' is not an email address", fields=["email"])
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}, not '{role}'", fields=["role"])
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            f"the password must have at least {MIN_PASSWORD_LENGTH} characters",
            fields=["password"],
        )
    if session.scalar(select(User).where(User.email == email)) is not None:
        raise UsageError(f"a user with email {email} already exists", fields=["email"])
    user = User(
        email=email, name=name, role=role, password_hash=hash_password(password, hash_method)
    )
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", "user", user.id, email=email, role=role)
    return user


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    secret: str  # shown once, never stored


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    session: Session, user: User, name: str, scopes: list[str], *, actor: str
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
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name.strip(),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        token_hash=token_hash(secret),
        scopes=sorted(set(scopes)),
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
    """The live token for `secret`, or None (unknown or revoked)."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(secret)))
    if token is None or token.revoked_at is not None:
        return None
    return token
