"""The local org's state: records, users, tokens, the org clock, faults and stats.

Everything lives in memory (one event loop owns it, so no locks) and is written through to
SQLite in the data dir when a transaction commits: WAL with synchronous=NORMAL, so a commit
costs no fsync yet survives a process crash or restart.
"""

from __future__ import annotations

import json
import random
import secrets
import sqlite3
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from bridge.devorg import ids
from bridge.devorg.latency import Latency

API_VERSION = "63.0"  # the version devorg.json offers clients
LATEST_API_VERSION = "66.0"  # the newest release served (Spring '26)
SESSION_TIMEOUT_SECONDS = 2 * 3600
DAILY_API_REQUESTS = 15000


# ---- the contract with the streaming side -------------------------------------------------


@dataclass
class RecordChange:
    sobject: str  # "Lead"
    change_type: str  # "created" | "updated" | "deleted" | "undeleted"
    record: dict[str, Any]  # all field values after the change (before it, for deleted)
    old: dict[str, Any] | None  # all field values before the change (None for created)
    changed_fields: set[str]  # fields whose value changed (all set fields for created)
    user_id: str  # who made the change
    at: datetime  # org clock time of the change: its record's SystemModstamp
    # The API that made it, as CDC's changeOrigin names it: "rest", or "bulkapi" (Bulk API
    # changes notify no PushTopic, but do produce change events).
    origin: str = "rest"
    # The transaction that committed it, set by the commit (Change Data Capture's header): the
    # key and commit number every change of the transaction shares, and the change's place in
    # the transaction, 1, 2, ….
    transaction_key: str = ""
    commit_number: int = 0
    sequence_number: int = 0


class Listener(Protocol):
    def record_changed(self, change: RecordChange) -> None: ...

    def reset(self) -> None: ...


# ---- clock ----------------------------------------------------------------------------------


class Clock:
    """The org clock: real UTC time plus an offset the control API moves."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self.offset_seconds = offset_seconds

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset_seconds)

    def advance(self, seconds: float) -> None:
        self.offset_seconds += seconds

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        self.offset_seconds = (when - datetime.now(UTC)).total_seconds()


# ---- faults ---------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # "error" (Salesforce error body) | "status" (bare HTTP status) | "latency" | "drop"
    status: int  # HTTP status for error/status
    error_code: str | None  # e.g. "INVALID_SESSION_ID", "UNABLE_TO_LOCK_ROW"
    message: str | None
    latency_ms: int


# Salesforce's status and message for the error codes a fault may name.
FAULT_DEFAULTS: dict[str, tuple[int, str]] = {
    "INVALID_SESSION_ID": (401, "Session expired or invalid"),
    "REQUEST_LIMIT_EXCEEDED": (403, "TotalRequests Limit exceeded."),
    "UNABLE_TO_LOCK_ROW": (
        400,
        "unable to obtain exclusive access to this record or 1 records: 00Q000000000000AAA",
    ),
    "SERVER_UNAVAILABLE": (503, "Server temporarily unavailable, please try again later."),
    "REQUEST_RUNNING_TOO_LONG": (
        400,
        "Your request was running for too long, and has been stopped.",
    ),
    "QUERY_TIMEOUT": (400, "Your query request was running for too long."),
    "API_CURRENTLY_DISABLED": (403, "API is currently disabled for this organization"),
    "UNKNOWN_EXCEPTION": (
        500,
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1234567890-12345 (-1234567890)",
    ),
}


@dataclass
class FaultRule:
    id: int
    path: str  # path prefix the rule applies to
    kind: str
    status: int
    error_code: str | None
    message: str | None
    latency_ms: int
    count: int | None  # remaining firings (None: unlimited)
    probability: float
    method: str | None
    fired: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """Injected failures. check(path) returns the fault to apply to this request, if any."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self._next_id = 1
        self._random = random.Random()

    def add(
        self,
        *,
        kind: str,
        path: str = "/services/data/",
        status: int | None = None,
        error_code: str | None = None,
        message: str | None = None,
        latency_ms: int = 0,
        count: int | None = None,
        probability: float = 1.0,
        method: str | None = None,
    ) -> FaultRule:
        if kind not in ("error", "status", "latency", "drop"):
            raise ValueError("kind must be one of error, status, latency, drop")
        if kind == "error":
            if not error_code:
                raise ValueError("an error fault needs error_code")
            default_status, default_message = FAULT_DEFAULTS.get(error_code, (400, error_code))
            status = status or default_status
            message = message or default_message
        elif kind == "status":
            status = status or 503
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        rule = FaultRule(
            id=self._next_id,
            path=path,
            kind=kind,
            status=status or 0,
            error_code=error_code,
            message=message,
            latency_ms=int(latency_ms),
            count=count,
            probability=probability,
            method=method.upper() if method else None,
        )
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def check(self, path: str, method: str | None = None) -> Fault | None:
        if not self.rules:
            return None
        for rule in self.rules:
            if not path.startswith(rule.path):
                continue
            if rule.method and method and rule.method != method.upper():
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.count is not None:
                rule.count -= 1
                if rule.count <= 0:
                    self.rules.remove(rule)
            return Fault(
                kind=rule.kind,
                status=rule.status,
                error_code=rule.error_code,
                message=rule.message,
                latency_ms=rule.latency_ms,
            )
        return None


# ---- stats ----------------------------------------------------------------------------------


class Stats:
    """API calls by user and endpoint; logins (access tokens issued) by user and grant; events
    delivered by channel (counted by streaming)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls_by_user: Counter[str] = Counter()
        self.calls_by_endpoint: Counter[str] = Counter()
        self.calls_by_user_endpoint: dict[str, Counter[str]] = defaultdict(Counter)
        self.events_by_channel: Counter[str] = Counter()
        self.logins_by_user: Counter[str] = Counter()
        self.logins_by_grant: Counter[str] = Counter()

    def login(self, user_id: str, grant: str) -> None:
        self.logins_by_user[user_id] += 1
        self.logins_by_grant[grant] += 1

    def api_call(self, user_id: str, endpoint: str) -> None:
        self.calls_by_user[user_id] += 1
        self.calls_by_endpoint[endpoint] += 1
        self.calls_by_user_endpoint[user_id][endpoint] += 1

    def events_delivered(self, channel: str, n: int = 1) -> None:
        self.events_by_channel[channel] += n

    def snapshot(self, usernames: dict[str, str]) -> dict[str, Any]:
        return {
            "api_calls": {
                "total": sum(self.calls_by_user.values()),
                "by_user": {usernames.get(u, u): n for u, n in self.calls_by_user.items()},
                "by_endpoint": dict(self.calls_by_endpoint),
                "by_user_endpoint": {
                    usernames.get(u, u): dict(c) for u, c in self.calls_by_user_endpoint.items()
                },
            },
            "events_delivered": {
                "total": sum(self.events_by_channel.values()),
                "by_channel": dict(self.events_by_channel),
            },
            "logins": {
                "total": sum(self.logins_by_user.values()),
                "by_user": {usernames.get(u, u): n for u, n in self.logins_by_user.items()},
                "by_grant": dict(self.logins_by_grant),
            },
        }


# ---- users and tokens -----------------------------------------------------------------------


@dataclass
class User:
    id: str
    username: str
    password: str
    name: str
    email: str
    role: str  # "integration" | "sales" | other

    def public(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username, "password": self.password}


@dataclass
class Token:
    token: str
    kind: str  # "access" | "refresh"
    user_id: str
    client_id: str
    issued_at: float  # org clock, epoch seconds
    expires_at: float | None  # org clock, epoch seconds (None: no expiry, refresh tokens)


# ---- records and transactions ---------------------------------------------------------------


class Transaction:
    """Writes made inside `DevOrgState.transaction()`; undone on rollback."""

    def __init__(self, state: DevOrgState) -> None:
        self.state = state
        self.undo: list[tuple[str, str, dict[str, Any] | None]] = []  # (sobject, id, before)
        self.dirty: dict[str, str] = {}  # id -> sobject
        self.changes: list[RecordChange] = []

    def put(self, sobject: str, record: dict[str, Any], change: RecordChange | None = None) -> None:
        """Store the record (insert or replace) and queue its change notification."""
        table = self.state._records[sobject]
        rid = record["Id"]
        before = table.get(rid)
        self.undo.append((sobject, rid, before))
        self.state._index_remove(sobject, before)
        table[rid] = record
        self.state._index_add(sobject, record)
        self.dirty[rid] = sobject
        if change is not None:
            self.changes.append(change)

    def rollback(self) -> None:
        for sobject, rid, before in reversed(self.undo):
            table = self.state._records[sobject]
            self.state._index_remove(sobject, table.get(rid))
            if before is None:
                table.pop(rid, None)
            else:
                table[rid] = before
                self.state._index_add(sobject, before)
        self.undo.clear()
        self.dirty.clear()
        self.changes.clear()


class Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raise inside a transaction to undo it without an error escaping."""


class DevOrgState:
    def __init__(self, data_dir: Path, *, schema: Any = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.clock = Clock()
        self.faults = Faults()
        self.stats = Stats()
        self.latency = Latency()
        #: how a user sees a stored streaming message (strict mode's field-level security)
        self.event_view: Callable[[str, str], str] | None = None
        self.listeners: list[Listener] = []
        self.users: dict[str, User] = {}
        self.tokens: dict[str, Token] = {}
        self.org_id = ""
        self.client_id = ""
        self.client_secret = ""
        self.session_timeout = SESSION_TIMEOUT_SECONDS
        self.daily_api_limit = DAILY_API_REQUESTS
        self.api_usage = 0
        self.api_usage_window_start = 0.0
        self._records: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        # (sobject, field) -> lowercase value -> ids; for external id and unique fields
        self._indexes: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._indexed_fields: dict[str, list[str]] = {}
        self._id_counter = 0
        self._tx: Transaction | None = None
        self._commit_number = 0
        self._db = sqlite3.connect(self.data_dir / "devorg.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, data TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, data TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS records (
                id TEXT PRIMARY KEY, sobject TEXT NOT NULL, data TEXT NOT NULL
            );
            """
        )
        self._load()

    # -- persistence ------------------------------------------------------------------------

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, **values: Any) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def _load(self) -> None:
        meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        self.clock.offset_seconds = float(meta.get("clock_offset", 0.0))
        self._id_counter = int(meta.get("id_counter", 0))
        self._saved_id_counter = self._id_counter
        self.org_id = meta.get("org_id", "")
        self.client_id = meta.get("client_id", "")
        self.client_secret = meta.get("client_secret", "")
        self.session_timeout = int(meta.get("session_timeout", SESSION_TIMEOUT_SECONDS))
        self.daily_api_limit = int(meta.get("daily_api_limit", DAILY_API_REQUESTS))
        self.api_usage = int(meta.get("api_usage", 0))
        self.api_usage_window_start = float(meta.get("api_usage_window_start", 0.0))
        for (data,) in self._db.execute("SELECT data FROM users"):
            user = User(**json.loads(data))
            self.users[user.id] = user
        for (data,) in self._db.execute("SELECT data FROM tokens"):
            tok = Token(**json.loads(data))
            self.tokens[tok.token] = tok
        for sobject, data in self._db.execute("SELECT sobject, data FROM records ORDER BY rowid"):
            record = json.loads(data)
            self._records[sobject][record["Id"]] = record
            self._index_add(sobject, record)

    def save_settings(self) -> None:
        self._set_meta(
            clock_offset=self.clock.offset_seconds,
            org_id=self.org_id,
            client_id=self.client_id,
            client_secret=self.client_secret,
            session_timeout=self.session_timeout,
            daily_api_limit=self.daily_api_limit,
            api_usage=self.api_usage,
            api_usage_window_start=self.api_usage_window_start,
        )

    def close(self) -> None:
        self._set_meta(api_usage=self.api_usage, clock_offset=self.clock.offset_seconds)
        self._db.close()

    # -- first start ------------------------------------------------------------------------

    def initialize(self) -> bool:
        """Create the org id, connected app and users on first start. True if it did."""
        if self.org_id:
            return False
        # Random, so that several local orgs (a fleet's) are different orgs, as in Salesforce.
        self.org_id = ids.make_id("00D", 1_000_000_000 + secrets.randbelow(62**9 - 10**9))
        self.client_id = (
            "3MVG9" + secrets.token_urlsafe(60).replace("-", "A").replace("_", "z")[:80]
        )
        self.client_secret = secrets.token_hex(32).upper()
        self.save_settings()
        return True

    def add_user(self, user: User) -> None:
        self.users[user.id] = user
        self._db.execute(
            "INSERT OR REPLACE INTO users (id, data) VALUES (?, ?)",
            (user.id, json.dumps(asdict(user))),
        )

    def remove_user(self, user_id: str) -> None:
        """Forget a user, its User record and its tokens (strict mode's Automated Process
        user, when strict mode is turned off)."""
        self.users.pop(user_id, None)
        self._records["User"].pop(user_id, None)
        for token in [t for t, tok in self.tokens.items() if tok.user_id == user_id]:
            del self.tokens[token]
        self._db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        self._db.execute("DELETE FROM records WHERE id = ?", (user_id,))
        self._db.execute("DELETE FROM tokens WHERE json_extract(data, '$.user_id') = ?", (user_id,))

    def user_by_username(self, username: str) -> User | None:
        for user in self.users.values():
            if user.username.lower() == username.lower():
                return user
        return None

    def user_by_role(self, role: str) -> User | None:
        for user in self.users.values():
            if user.role == role:
                return user
        return None

    # -- ids --------------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        self._id_counter += 1
        # Spread ids so that the base-62 tail looks like Salesforce's (mixed case).
        return ids.make_id(prefix, 1_000_000_000 + self._id_counter * 7919)

    # -- tokens -----------------------------------------------------------------------------

    def issue_token(self, user: User, kind: str, client_id: str) -> Token:
        now = self.clock.now().timestamp()
        if kind == "access":
            # Salesforce access tokens look like "<org id>!<opaque>".
            value = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
            expires: float | None = now + self.session_timeout
        else:
            value = "5Aep" + secrets.token_urlsafe(64)
            expires = None
        tok = Token(value, kind, user.id, client_id, now, expires)
        self.tokens[value] = tok
        self._db.execute(
            "INSERT OR REPLACE INTO tokens (token, data) VALUES (?, ?)",
            (value, json.dumps(asdict(tok))),
        )
        return tok

    def user_for_token(self, token: str) -> User | None:
        """The user an access token belongs to; None if unknown or expired."""
        tok = self.tokens.get(token)
        if tok is None or tok.kind != "access":
            return None
        now = self.clock.now().timestamp()
        if tok.expires_at is not None and now >= tok.expires_at:
            return None
        # Salesforce extends a session on activity once half of the timeout has passed.
        if tok.expires_at is not None and tok.expires_at - now < self.session_timeout / 2:
            tok.expires_at = now + self.session_timeout
            self._db.execute(
                "UPDATE tokens SET data = ? WHERE token = ?", (json.dumps(asdict(tok)), token)
            )
        return self.users.get(tok.user_id)

    def refresh_token_user(self, token: str, client_id: str) -> User | None:
        tok = self.tokens.get(token)
        if tok is None or tok.kind != "refresh" or tok.client_id != client_id:
            return None
        return self.users.get(tok.user_id)

    def revoke_token(self, token: str) -> None:
        """Revoke a token; revoking a refresh token ends its user's sessions of that client."""
        tok = self.tokens.pop(token, None)
        self._db.execute("DELETE FROM tokens WHERE token = ?", (token,))
        if tok is not None and tok.kind == "refresh":
            self.expire_tokens(tok.user_id)

    def expire_tokens(self, user_id: str | None = None) -> int:
        """End every access session now (optionally one user's). Refresh tokens stay valid."""
        now = self.clock.now().timestamp()
        expired = 0
        for tok in self.tokens.values():
            mine = user_id is None or tok.user_id == user_id
            live = tok.expires_at is None or tok.expires_at > now
            if tok.kind == "access" and mine and live:
                tok.expires_at = now
                expired += 1
        self._db.execute("DELETE FROM tokens WHERE json_extract(data, '$.kind') = 'access'")
        self._db.executemany(
            "INSERT INTO tokens (token, data) VALUES (?, ?)",
            [(t.token, json.dumps(asdict(t))) for t in self.tokens.values() if t.kind == "access"],
        )
        return expired

    # -- API usage (the DailyApiRequests limit) ----------------------------------------------

    def count_api_call(self) -> bool:
        """Count one API request; False if the daily limit is already used up."""
        now = self.clock.now().timestamp()
        if now - self.api_usage_window_start >= 86400:
            self.api_usage_window_start = now
            self.api_usage = 0
        if self.api_usage >= self.daily_api_limit:
            return False
        self.api_usage += 1
        return True

    # -- listeners --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    # -- records ----------------------------------------------------------------------------

    def set_indexed_fields(self, sobject: str, fields: list[str]) -> None:
        """Fields to keep a value index for (external ids, unique fields)."""
        self._indexed_fields[sobject] = fields
        for f in fields:
            idx: dict[str, set[str]] = {}
            self._indexes[(sobject, f)] = idx
            for rid, rec in self._records[sobject].items():
                v = rec.get(f)
                if v is not None and not rec.get("IsDeleted"):
                    idx.setdefault(_index_key(v), set()).add(rid)

    def _index_add(self, sobject: str, record: dict[str, Any] | None) -> None:
        if record is None or record.get("IsDeleted"):
            return
        for f in self._indexed_fields.get(sobject, ()):
            v = record.get(f)
            if v is not None:
                self._indexes[(sobject, f)].setdefault(_index_key(v), set()).add(record["Id"])

    def _index_remove(self, sobject: str, record: dict[str, Any] | None) -> None:
        if record is None:
            return
        for f in self._indexed_fields.get(sobject, ()):
            v = record.get(f)
            if v is not None:
                bucket = self._indexes[(sobject, f)].get(_index_key(v))
                if bucket is not None:
                    bucket.discard(record["Id"])

    def lookup(self, sobject: str, field_name: str, value: Any) -> list[str] | None:
        """Ids of live records whose indexed field equals value; None if not indexed."""
        idx = self._indexes.get((sobject, field_name))
        if idx is None:
            return None
        return sorted(idx.get(_index_key(value), ()))

    def records(self, sobject: str, *, include_deleted: bool = False) -> Iterable[dict[str, Any]]:
        """Live records of an object (and deleted ones in the recycle bin if asked)."""
        table = self._records.get(sobject)
        if not table:
            return []
        if include_deleted:
            return list(table.values())
        return [r for r in table.values() if not r.get("IsDeleted")]

    def get(
        self, sobject: str, record_id: str, *, include_deleted: bool = False
    ) -> dict[str, Any] | None:
        rec = self._records.get(sobject, {}).get(record_id)
        if rec is None or (rec.get("IsDeleted") and not include_deleted):
            return None
        return rec

    def find(self, record_id: str) -> tuple[str, dict[str, Any]] | None:
        """(sobject, record) for any id, deleted or not, by its key prefix."""
        assert self.schema is not None
        sobject = self.schema.sobject_for_prefix(record_id[:3])
        if sobject is None:
            return None
        rec = self._records.get(sobject, {}).get(record_id)
        return (sobject, rec) if rec is not None else None

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All writes inside commit together (SQLite, then listeners) or not at all.

        Nested use joins the outer transaction.
        """
        if self._tx is not None:
            yield self._tx
            return
        tx = Transaction(self)
        self._tx = tx
        try:
            yield tx
        except Rollback:
            tx.rollback()
            return
        except BaseException:
            tx.rollback()
            raise
        finally:
            self._tx = None
        self._commit(tx)

    def _commit(self, tx: Transaction) -> None:
        if not tx.dirty:
            return
        rows = []
        for rid, sobject in tx.dirty.items():
            rec = self._records[sobject].get(rid)
            if rec is not None:
                rows.append((rid, sobject, json.dumps(rec, separators=(",", ":"))))
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO records (id, sobject, data) VALUES (?, ?, ?)", rows
            )
            if self._id_counter != self._saved_id_counter:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('id_counter', ?)",
                    (json.dumps(self._id_counter),),
                )
                self._saved_id_counter = self._id_counter
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            tx.rollback()
            raise
        if tx.changes:
            self._number_changes(tx.changes)
        for change in tx.changes:
            for listener in self.listeners:
                listener.record_changed(change)

    def _number_changes(self, changes: list[RecordChange]) -> None:
        """Stamp a committed transaction's changes with its key, its commit number (increasing,
        as a system change number does) and their order in it."""
        key = str(uuid.uuid4())
        now_us = int(self.clock.now().timestamp() * 1_000_000)
        self._commit_number = max(self._commit_number + 1, now_us)
        for sequence, change in enumerate(changes, start=1):
            change.transaction_key = key
            change.commit_number = self._commit_number
            change.sequence_number = sequence

    # -- reset ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Remove every record, fault and stat; put the clock and limits back.

        Users, sessions and refresh tokens stay, so connected clients keep working.
        """
        for sobject in list(self._records):
            if sobject != "User":
                del self._records[sobject]
        for user_id in [u for u in self._records.get("User", {}) if u not in self.users]:
            del self._records["User"][user_id]  # User records made through the API go too
        for sobject, fields in self._indexed_fields.items():
            self.set_indexed_fields(sobject, fields)
        self.faults.clear()
        self.stats.reset()
        self.latency.reset()
        self.clock.offset_seconds = 0.0
        self.api_usage = 0
        self.api_usage_window_start = 0.0
        self.daily_api_limit = DAILY_API_REQUESTS
        self.session_timeout = SESSION_TIMEOUT_SECONDS
        self._db.execute("DELETE FROM records WHERE sobject != 'User'")
        keep = list(self.users)
        marks = ",".join("?" * len(keep))
        self._db.execute(
            f"DELETE FROM records WHERE sobject = 'User' AND id NOT IN ({marks})",  # noqa: S608 - placeholders only
            keep,
        )
        self.save_settings()
        for listener in self.listeners:
            listener.reset()


def _index_key(value: Any) -> str:
    # Salesforce matches text external ids case-insensitively.
    return value.lower() if isinstance(value, str) else json.dumps(value)


def epoch_ms(when: datetime | None = None) -> str:
    return str(int((when or datetime.now(UTC)).timestamp() * 1000))
