"""Bearer API tokens on a request: who it is and whether the token may do `scope`.

Used by the JSON API (`api.require_scope`) and by `/metrics` and the detailed `/readyz`
(scope `metrics:read`). Refusals name what is wrong: no token, unknown or revoked, expired
(ASVS 3.5), the user deactivated, or the scope missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from bridge.store.models import ApiToken, User, utcnow
from bridge.users import find_token, token_expired
from bridge.vocabulary import ADMIN, ADMIN_SCOPES

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sfbridge"'}


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


def authenticate(s: Session, header: str, scope: str) -> tuple[ApiToken, User] | Refusal:
    """The token and user of an `Authorization: Bearer <token>` header that may use `scope`."""
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return Refusal(401, "unauthorized", "send an API token: Authorization: Bearer <token>")
    token = find_token(s, secret.strip())
    if token is None:
        return Refusal(401, "unauthorized", "the API token is unknown or revoked")
    if token_expired(token) and token.expires_at is not None:
        return Refusal(
            401,
            "token_expired",
            f"the API token expired at {token.expires_at.isoformat()}: create a new one",
        )
    user = s.get(User, token.user_id)
    if user is None or not user.active:
        return Refusal(401, "unauthorized", "the token's user is deactivated")
    if scope not in (token.scopes or []):
        return Refusal(403, "insufficient_scope", f"this token lacks the scope '{scope}'")
    if scope in ADMIN_SCOPES and user.role != ADMIN:  # the user was demoted
        return Refusal(403, "insufficient_scope", f"'{scope}' needs an admin's token")
    token.last_used_at = utcnow()
    return token, user
