"""Sign-in throttling (ASVS 2.2.1): a delay that grows with failed attempts, never a flat lock.

Attempts are counted per key in `sign_in_throttles`:

- `account:<sha256 of the typed email>` — every account, known or not, is counted the same way
  (an unknown account is delayed exactly like a real one, so a delay reveals nothing);
- `address:<client address>` — many failures from one address slow that address down;
- `device:<id>` — a browser that signed in to the account before carries a signed device
  cookie (OWASP's "device cookies"); its attempts are counted on the device alone, so neither an
  attacker guessing at the account nor one behind the same proxy can lock its owner out.

An attempt is *taken* before the password is checked: a compare-and-set on `attempts`
(`UPDATE ... SET attempts = n + 1 WHERE key = ... AND attempts = n AND not yet delayed`) in its
own committed transaction, so parallel guesses on any number of web workers cannot share one
attempt. After the free attempts each failure doubles the wait before the next one, up to a
ceiling. A sign-in that succeeds clears the account's (or device's) count and gives the
address its attempt back; an admin can clear any key (a password reset clears the account's),
and a key untouched for `forget_seconds` starts again from zero.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bridge.store.models import SignInThrottle

ACCOUNT, ADDRESS, DEVICE = "account", "address", "device"
INVALID_ADDRESS = re.compile(r"invalid:[0-9a-f]{16}")


@dataclass(frozen=True)
class Policy:
    free_attempts: int  # attempts before any delay
    first_delay_seconds: float  # the wait after the last free attempt fails; doubles after that
    max_delay_seconds: float
    forget_seconds: float  # a key with no attempt for this long starts again

    def delay_after(self, attempts: int) -> float:
        """The wait before the attempt after `attempts` consecutive failed ones."""
        if attempts < self.free_attempts:
            return 0.0
        doublings = min(attempts - self.free_attempts, 30)
        return float(min(self.first_delay_seconds * 2**doublings, self.max_delay_seconds))


def account_key(email: str) -> str:
    # A hash, not the typed text: people type passwords into the email field.
    return f"{ACCOUNT}:{hashlib.sha256(email.strip().lower().encode()).hexdigest()}"


def normal_address(raw: str) -> str:
    """A client address normalized (`2001:DB8::1` and `2001:db8:0::1` are one address).
    Anything else — possible only from a trusted proxy's header — becomes a short fixed
    `invalid:<hash>`, so it fits the columns it is written to and cannot smuggle text in."""
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        if INVALID_ADDRESS.fullmatch(raw):
            return raw
        return "invalid:" + hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:16]


def address_key(address: str) -> str:
    return f"{ADDRESS}:{normal_address(address)}"


def device_key(device_id: str) -> str:
    return f"{DEVICE}:{device_id}"


def take_attempt(session: Session, key: str, policy: Policy, now: datetime) -> float:
    """Take one attempt on `key`: 0 when taken (the password may be checked), else the seconds
    to wait. Commit the session straight after, before checking the password."""
    _insert_if_missing(session, key, now)
    for _ in range(5):  # a lost compare-and-set is retried on the fresh row
        row = session.execute(
            select(SignInThrottle.attempts, SignInThrottle.last_at, SignInThrottle.not_before)
            .where(SignInThrottle.key == key)
            .execution_options(populate_existing=True)
        ).one()
        forgotten = row.last_at <= now - timedelta(seconds=policy.forget_seconds)
        attempts = 0 if forgotten else row.attempts
        if not forgotten and row.not_before is not None and row.not_before > now:
            return max((row.not_before - now).total_seconds(), 1.0)
        taken = session.execute(
            update(SignInThrottle)
            .where(SignInThrottle.key == key, SignInThrottle.attempts == row.attempts)
            .values(
                attempts=attempts + 1,
                last_at=now,
                not_before=now + timedelta(seconds=policy.delay_after(attempts + 1)),
            )
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return 0.0
    return max(policy.first_delay_seconds, 1.0)


def _insert_if_missing(session: Session, key: str, now: datetime) -> None:
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(SignInThrottle)
        .values(key=key, attempts=0, last_at=now, not_before=None)
        .on_conflict_do_nothing(index_elements=["key"])
    )


def give_back(session: Session, key: str, policy: Policy) -> None:
    """Return an attempt that succeeded (an address counts failures, not sign-ins)."""
    session.execute(
        update(SignInThrottle)
        .where(SignInThrottle.key == key, SignInThrottle.attempts > 0)
        .values(attempts=SignInThrottle.attempts - 1)
    )
    session.execute(
        update(SignInThrottle)
        .where(SignInThrottle.key == key, SignInThrottle.attempts < policy.free_attempts)
        .values(not_before=None)
    )


def clear(session: Session, key: str) -> bool:
    """Forget the attempts on `key` (a successful sign-in, or an admin); whether any were kept."""
    result = session.execute(delete(SignInThrottle).where(SignInThrottle.key == key))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def forget_old(session: Session, policy: Policy, now: datetime) -> int:
    """Delete keys with no attempt for `forget_seconds` (they count as zero anyway), so guesses
    at many made-up accounts do not pile up rows."""
    cutoff = now - timedelta(seconds=policy.forget_seconds)
    result = session.execute(delete(SignInThrottle).where(SignInThrottle.last_at <= cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delayed(session: Session, now: datetime, kind: str | None = None) -> list[SignInThrottle]:
    """Keys whose next attempt must wait, soonest free last (for the admin page and the CLI)."""
    query = select(SignInThrottle).where(SignInThrottle.not_before > now)
    if kind is not None:
        query = query.where(SignInThrottle.key.startswith(f"{kind}:"))
    return list(session.scalars(query.order_by(SignInThrottle.not_before.desc())))
