"""Known records: the Leads and Contacts the bridge has seen, by email, so a push to a person
it knows needs no lookup call.

An entry is `email → (object, id, as of)`, kept in Redis per org (`sfbridge:known:<org>:<email>`,
and `sfbridge:known:<org>:id:<id>` back to the email), each for `KNOWN_RECORD_MAX_AGE`. It is
fed only from what the bridge already learns, through `learn` / `forget`:

- its own write results and the lookups behind them (the sender, after a push is `sent`);
- the captured changes of Leads and Contacts (the intake, `learn_changes`, for every batch of
  inbound events: stream, safety-net poll and backfill alike), own writes included: a
  conversion, a delete or a changed email drops the old entry.

What it may answer (`whos`) and when is in docs/writeback.md ("Known records"): an activity's
WhoId for an email it knows — written to that id directly; if Salesforce answers that the id is
deleted, unknown or a converted Lead (`STALE_CODES`), the entry is dropped and that push looks
its person up as before. An email it does not know is looked up: "not known" never means "not in
Salesforce" (Bulk API writes raise no streaming events, a poll runs minutes apart), and a
duplicate person in a customer's org is worse than one more call. Referral adds always look up:
their decision needs the record's values (its referral id, created date, blank fields).

Without Redis (`KnownRecords(None, ...)`) nothing is known and every push looks up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from bridge.writeback.mapping import salesforce_email

log = logging.getLogger(__name__)

KNOWN_RECORD_MAX_AGE = timedelta(hours=24)
"""How long an entry is trusted without being seen again (a change missed by capture, such as a
Bulk API email edit before the next poll, is forgotten after this)."""

PREFIXES = {"003": "Contact", "00Q": "Lead"}
"""Key prefixes of the two objects a WhoId names here (fixed across Salesforce orgs)."""

STALE_CODES = frozenset(
    {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "CANNOT_UPDATE_CONVERTED_LEAD"}
)
"""What Salesforce answers for a write naming a record that is gone or converted: the entry
that gave the id is dropped and the push looks its person up."""


@dataclass(frozen=True)
class Known:
    sobject: str  # Contact | Lead
    id: str
    at: datetime  # when the bridge last saw it


def _rank(sobject: str) -> int:
    return 2 if sobject == "Contact" else 1  # a Contact wins, as in the WhoId lookup


@dataclass
class KnownRecords:
    """The index of one org; `client` None: knows nothing, learns nothing."""

    client: redis.Redis | None
    org_id: int | None

    def _key(self, email: str) -> str:
        return f"sfbridge:known:{self.org_id}:{email}"

    def _id_key(self, record_id: str) -> str:
        return f"sfbridge:known:{self.org_id}:id:{record_id}"

    @property
    def active(self) -> bool:
        return self.client is not None and self.org_id is not None

    def whos(self, emails: Sequence[str | None], now: datetime | None = None) -> dict[str, Known]:
        """The known record of each email the index knows (normalized email → Known)."""
        keys = sorted({k for k in (salesforce_email(e) for e in emails) if k})
        if not self.active or not keys:
            return {}
        assert self.client is not None
        try:
            values = self.client.mget([self._key(k) for k in keys])
        except redis.RedisError as exc:  # no index: every push looks up, as without one
            log.warning("known records unavailable: %s", exc)
            return {}
        now = now or datetime.now(UTC)
        out: dict[str, Known] = {}
        for key, raw in zip(keys, values, strict=True):
            known = _parse(raw)
            if known is not None and now - known.at < KNOWN_RECORD_MAX_AGE:
                out[key] = known
        return out

    def learn(self, seen: Iterable[tuple[str | None, str, str]], *, lookup: bool = False) -> None:
        """Record (email, object, id) triples just seen. A Contact replaces a Lead; a known
        Contact is kept over another Contact unless `lookup` (the WhoId lookup's answer: the
        oldest Contact, else the oldest Lead, is what it would answer again)."""
        self.update(((email, sobject, record_id, False) for email, sobject, record_id in seen),
                    lookup=lookup)  # fmt: skip

    def forget(self, record_ids: Iterable[str]) -> None:
        """Drop the entries naming these records (deleted, converted, or refused as stale)."""
        self.update((None, "", record_id, True) for record_id in record_ids)

    def update(self, records: Iterable[Record], *, lookup: bool = False) -> None:
        """Learn the records seen and forget those gone, in their order, in one round trip: a
        script reads and writes the entries in Redis (`_UPDATE`), where reading them first
        and then writing took two, and each changed email one more."""
        args: list[str | int] = []
        at = datetime.now(UTC).isoformat()
        for email, sobject, record_id, gone in records:
            if gone and record_id:
                args += ["forget", record_id, "", "", ""]
            elif (key := salesforce_email(email)) and sobject in PERSONS and record_id:
                value = json.dumps({"o": sobject, "id": record_id, "at": at})
                args += ["learn", record_id, key, sobject, value]
        if not self.active or not args:
            return
        assert self.client is not None
        ttl = int(KNOWN_RECORD_MAX_AGE.total_seconds())
        try:
            self.client.eval(_UPDATE, 0, self._key(""), ttl, 1 if lookup else 0, *args)
        except redis.RedisError as exc:
            log.warning("known records not updated: %s", exc)


Record = tuple[str | None, str, str, bool]
"""What `update` takes of a record: its email, object (Lead | Contact), id, and whether it is
gone (deleted or converted: forgotten)."""

PERSONS = ("Lead", "Contact")
"""The objects the index knows."""


_UPDATE = """
local prefix, ttl, lookup = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local function rank(sobject) if sobject == 'Contact' then return 2 end return 1 end
local function entry(email)  -- the email's entry, nil if none (or unreadable)
  local raw = redis.call('GET', prefix .. email)
  if not raw then return nil end
  local ok, known = pcall(cjson.decode, raw)
  if ok and type(known) == 'table' and type(known.id) == 'string' then return known end
  return nil
end
local function drop(email, id)  -- the email's entry, if it still names the record
  local known = entry(email)
  if known and known.id == id then redis.call('DEL', prefix .. email) end
end
for i = 4, #ARGV, 5 do
  local verb, id, email = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local sobject, value = ARGV[i + 3], ARGV[i + 4]
  local id_key = prefix .. 'id:' .. id
  local old = redis.call('GET', id_key)
  if verb == 'forget' then
    redis.call('DEL', id_key)
    if old then drop(old, id) end
  else
    if old and old ~= email then drop(old, id) end  -- its email changed
    local known = entry(email)
    local other = known and known.id ~= id
    if not (other and not lookup and rank(known.o) >= rank(sobject)) then
      redis.call('SET', prefix .. email, value, 'EX', ttl)
      redis.call('SET', id_key, email, 'EX', ttl)
    end  -- else an older Contact (or Lead) of the same email stays
  end
end
"""
"""Learn or forget, record by record (ARGV: the org's key prefix, the TTL, lookup 1/0, then
five per record: forget|learn, id, email, object, entry). The keys are the org's, made from the
prefix as `_key` / `_id_key` make them: one Redis server (the bridge does not shard its keys)."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(raw: bytes | str | None) -> Known | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Known(str(data["o"]), str(data["id"]), datetime.fromisoformat(data["at"]))
    except (ValueError, KeyError, TypeError):
        return None


Change = tuple[int, str, dict[str, Any], bool]
"""A captured change: org connection id, object, the record as the event carries it, deleted."""


def learn_changes(client: redis.Redis | None, changes: Iterable[Change]) -> None:
    """Feed the index from captured changes (those of Leads and Contacts count), in their
    order: a live record with an email is learnt, a deleted or converted one forgotten. Called
    by the intake for every batch of inbound events it takes in; one round trip per org."""
    by_org: dict[int, list[Record]] = {}
    for org_id, sobject, record, deleted in changes:
        if sobject not in PERSONS or not record.get("Id"):
            continue
        gone = deleted or record.get("IsConverted") in (True, "true")
        email = str(record["Email"]) if record.get("Email") else None
        if gone or email:
            by_org.setdefault(org_id, []).append((email, sobject, str(record["Id"]), gone))
    for org_id, records in by_org.items():
        KnownRecords(client, org_id).update(records)


def who_prefix_object(record_id: str | None) -> str | None:
    """Contact or Lead, from a WhoId's key prefix; None for anything else."""
    return PREFIXES.get(str(record_id or "")[:3])
