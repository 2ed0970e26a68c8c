"""Change events as the bridge stores them: parsed from Bayeux messages or polled records.

Pure functions (no I/O). A change is identified by its `change_key`: the record id plus its
SystemModstamp, so the same change delivered by streaming and by polling is stored once.
Deletes carry no new SystemModstamp in a PushTopic event, so they are keyed by channel and
replay id instead.

Poison events: `read_message` never raises. A message whose shape the parser does not expect
(an `Id` that is a list, a numeric `createdDate`, `replayId` = inf, a string longer than any
Salesforce field, a NUL character the database refuses) becomes one *malformed* change that
keeps the raw message as text and the error in words, so it is stored, its entry fails for a
reviewer, and the channel's cursor moves past it (Debezium's dead-letter idea).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.streaming import storable
from bridge.streaming.storable import MAX_INTEGER, show
from bridge.vocabulary import CHANGE_TYPES, KEY_PREFIXES, ChangeType

#: The CDC change types mapped onto the PushTopic event types (vocabulary.CHANGE_TYPES).
_CDC_TYPES: dict[str, ChangeType] = {
    "CREATE": "created",
    "UPDATE": "updated",
    "DELETE": "deleted",
    "UNDELETE": "undeleted",
    # Gap events name the records but carry no field values (a change made outside a
    # Salesforce transaction): the receiver's lookups read the records back by id.
    "GAP_CREATE": "created",
    "GAP_UPDATE": "updated",
    "GAP_DELETE": "deleted",
    "GAP_UNDELETE": "undeleted",
}


class MalformedEvent(ValueError):
    """A message that cannot be stored as a change (missing id, unknown type)."""


#: A Salesforce record id: 15 case-sensitive or 18 case-insensitive alphanumerics.
_RECORD_ID = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
#: An object's API name (the stored sobject_type is at most 64 characters).
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: Replay ids are positive and fit the stored BIGINT.
MAX_REPLAY_ID = MAX_INTEGER
#: How much of an unreadable message is kept as its raw text.
MAX_RAW_CHARS = 65_536
#: What a JSON object is read as, dict first: a dict is told without the ABC's check (a
#: Python call each time, six times an event).
_MAPPING = (dict, Mapping)
#: The longest channel name read (the stored change key adds a prefix and the replay id).
MAX_CHANNEL_CHARS = 200


@dataclass(frozen=True)
class ChangeEvent:
    """One change of one record, ready to be stored as an InboundEvent."""

    channel: str
    replay_id: int | None
    source: str  # stream | poll
    sobject_type: str
    record_id: str | None
    change_type: str
    event_created_at: datetime | None
    modstamp: datetime | None
    fields: dict[str, Any]  # the record's field values the event carried
    payload: dict[str, Any] = field(repr=False)
    error: str | None = None  # a malformed message: stored anyway, its entry fails with this
    payload_text: str | None = field(default=None, repr=False, compare=False)
    """`payload` as JSON text when the transport's own text of it is at hand (a Bayeux
    message as it came): stored as it is, not encoded again (`payload_json`)."""

    @functools.cached_property
    def change_key(self) -> str:
        """Made once: read_message checks it and the inbox's row uses it."""
        return change_key(self)


class WireMessage(dict[str, Any]):
    """A message as the Bayeux client read it from the server's answer, with its JSON text
    (`text`): encoding a PushTopic event again cost as much as storing it."""

    __slots__ = ("text",)

    def __init__(self, message: dict[str, Any], text: str) -> None:
        super().__init__(message)
        self.text = text


def payload_json(event: ChangeEvent) -> str:
    """The event's payload as the JSON text to store (a malformed one's with its error)."""
    if event.error is not None:
        return json.dumps({**event.payload, "_error": event.error})
    if event.payload_text is not None:
        return event.payload_text
    return json.dumps(event.payload)


def parse_sf_datetime(value: Any) -> datetime | None:
    """Salesforce datetimes: ``2024-05-01T10:00:00.000+0000``, ``...Z`` or epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MalformedEvent(f"{show(value)} is not a Salesforce datetime")
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, ValueError, OSError):
            raise MalformedEvent(f"{show(value)} is not a time in epoch milliseconds") from None
    if len(value) > 40:
        raise MalformedEvent(f"{show(value)} is not a Salesforce datetime")
    try:  # Python reads both of Salesforce's forms itself (3.11+); the rest is for the others
        parsed = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # +0000 -> +00:00
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedEvent(f"'{value}' is not a Salesforce datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedEvent(f"{what} is {show(value)}, not text")
    return value


def _record_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _RECORD_ID.fullmatch(value):
        raise MalformedEvent(f"{what} is {show(value)}, not a 15- or 18-character record id")
    return value


def _replay_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_REPLAY_ID:
        raise MalformedEvent(f"replayId is {show(value)}, not a positive whole number")
    return value


def format_modstamp(value: datetime) -> str:
    """Millisecond precision in UTC, the precision of SystemModstamp. `isoformat` is about
    four times cheaper than `strftime` (twice per streamed event); it pads a year before
    1000 to four digits where `strftime` does not, so those keep `strftime`'s text."""
    value = value.astimezone(UTC)
    if value.year < 1000:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def change_key(event: ChangeEvent) -> str:
    """The identity of a change: ``<record id>@<SystemModstamp>``; deletes by replay id."""
    if event.change_type == "deleted" or event.modstamp is None or not event.record_id:
        if event.replay_id is None and event.error:
            # Unreadable and without a replay id: keyed by content so a redelivery is absorbed.
            digest = hashlib.sha256(repr(sorted(event.payload.items())).encode()).hexdigest()
            return f"malformed:{event.channel}:{digest[:32]}"
        if event.replay_id is None:
            # A polled delete (queryAll) has a SystemModstamp; anything else is unidentifiable.
            if event.record_id and event.modstamp is not None:
                return f"{event.record_id}@{format_modstamp(event.modstamp)}:deleted"
            raise MalformedEvent("a change without replay id needs a record id and SystemModstamp")
        return f"replay:{event.channel}:{event.replay_id}"
    return f"{event.record_id}@{format_modstamp(event.modstamp)}"


def sobject_for_id(record_id: str | None) -> str | None:
    return KEY_PREFIXES.get((record_id or "")[:3])


def _clean(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}


def read_message(message: Any, topic_objects: Mapping[str, str]) -> list[ChangeEvent]:
    """The changes in one Bayeux data message; never raises (see the module docstring)."""
    try:
        events = from_bayeux(message, topic_objects)
        for ev in events:
            _ = ev.change_key  # a datetime at the edge of the calendar fails here, not later
        return events
    except MalformedEvent as exc:
        return [malformed(message, exc)]
    except Exception as exc:  # noqa: BLE001 - a parser bug on a hostile shape must not stall
        return [malformed(message, MalformedEvent(f"unreadable ({type(exc).__name__}: {exc})"))]


def from_bayeux(message: Mapping[str, Any], topic_objects: Mapping[str, str]) -> list[ChangeEvent]:
    """Events in one Bayeux data message (a PushTopic or a CDC channel).

    `topic_objects` maps channel -> object name (from the PushTopic's query), used when the
    record id does not tell the object. A CDC event may name several records: one change each,
    the first keeps the replay id (the others are identified by record id + modstamp).
    Raises MalformedEvent, in words, for anything it cannot read or store.
    """
    if not isinstance(message, _MAPPING):
        raise MalformedEvent(f"the message is {show(message)}, not an object")
    channel = _channel(message)
    data = message.get("data")
    if not isinstance(data, _MAPPING) or not isinstance(data.get("event"), _MAPPING):
        raise MalformedEvent(f"message on {channel} has no data.event")
    event = data["event"]
    if "replayId" not in event:
        raise MalformedEvent(f"message on {channel} has no numeric replayId")
    try:
        replay_id = _replay_id(event["replayId"])
    except MalformedEvent as exc:
        raise MalformedEvent(f"message on {channel}: {exc}") from None
    try:
        storable.check(message, "message")
    except storable.Unstorable as exc:
        raise MalformedEvent(str(exc)) from None
    payload = dict(message)
    text = message.text if isinstance(message, WireMessage) else None
    if "sobject" in data:
        return [
            _from_topic(channel, replay_id, event, data["sobject"], topic_objects, payload, text)
        ]
    cdc = data.get("payload")
    if isinstance(cdc, _MAPPING) and isinstance(cdc.get("ChangeEventHeader"), _MAPPING):
        created = parse_sf_datetime(event.get("createdDate"))
        return from_cdc(channel, replay_id, created, cdc, payload, text)
    raise MalformedEvent(f"replayId {replay_id} on {channel}: neither a PushTopic nor a CDC event")


def _channel(message: Mapping[str, Any]) -> str:
    channel = message.get("channel")
    if not isinstance(channel, str) or not channel.startswith("/"):
        raise MalformedEvent(f"the message's channel is {show(channel)}, not a channel name")
    if len(channel) > MAX_CHANNEL_CHARS:
        raise MalformedEvent(f"the channel name is {len(channel)} characters long")
    return channel


def _from_topic(
    channel: str,
    replay_id: int,
    event: Mapping[str, Any],
    sobject: Any,
    topic_objects: Mapping[str, str],
    payload: dict[str, Any],
    payload_text: str | None,
) -> ChangeEvent:
    where = f"replayId {replay_id} on {channel}"
    if not isinstance(sobject, _MAPPING):
        raise MalformedEvent(f"{where}: data.sobject is {show(sobject)}, not a record")
    record = _clean(sobject)
    change_type = event.get("type")
    if change_type not in CHANGE_TYPES:
        raise MalformedEvent(f"{where}: unknown type {show(change_type)}")
    # The Streaming API sends createdDate as an ISO 8601 string.
    created = parse_sf_datetime(_text(event.get("createdDate", ""), f"{where}: createdDate"))
    record_id = _record_id(record.get("Id"), f"{where}: the record's Id")
    stamp = record.get("SystemModstamp")
    modstamp = parse_sf_datetime(_text(stamp, f"{where}: SystemModstamp") if stamp else None)
    sobject_type = sobject_for_id(record_id) or topic_objects.get(channel)
    if not sobject_type:
        raise MalformedEvent(f"{where}: cannot tell the object")
    return ChangeEvent(
        channel=channel,
        replay_id=replay_id,
        source="stream",
        sobject_type=sobject_type,
        record_id=record_id,
        change_type=str(change_type),
        event_created_at=created,
        modstamp=modstamp,
        fields=record,
        payload=payload,
        payload_text=payload_text,
    )


def cdc_values(cdc: Mapping[str, Any]) -> dict[str, Any]:
    """The field values of a CDC payload, shaped like a REST record."""
    header = cdc.get("ChangeEventHeader") or {}
    values = {k: v for k, v in cdc.items() if k != "ChangeEventHeader"}
    if isinstance(values.get("Name"), Mapping):
        # A person's compound Name arrives nested (FirstName, LastName, ...): flatten it, as
        # the REST API and PushTopics give those fields.
        values.update(values.pop("Name"))
    if header.get("commitUser") and "LastModifiedById" not in values:
        values["LastModifiedById"] = header["commitUser"]
    return values


def from_cdc(
    channel: str,
    replay_id: int | None,
    created: datetime | None,
    cdc: Mapping[str, Any],
    payload: dict[str, Any],
    payload_text: str | None = None,
) -> list[ChangeEvent]:
    """The changes one CDC payload names (one per record id). `replay_id` None: the transport's
    replay ids are not numbers (the Pub/Sub API's), so every change is keyed by record and
    time."""
    where = f"replayId {replay_id} on {channel}"
    header = cdc["ChangeEventHeader"]
    kind = header.get("changeType")
    entity = header.get("entityName")
    if kind == "GAP_OVERFLOW":
        # More than 100,000 changes in one transaction: neither values nor record ids.
        raise MalformedEvent(
            f"{where}: overflow event (a transaction changed too many "
            f"{entity} records to report each); catch up with "
            f"`sfbridge poll --since <its time> --object {entity}`"
        )
    change_type = _CDC_TYPES.get(kind) if isinstance(kind, str) else None
    if change_type is None:
        raise MalformedEvent(f"{where}: {show(kind)} event")
    if not isinstance(entity, str) or not _API_NAME.fullmatch(entity):
        raise MalformedEvent(f"{where}: entityName is {show(entity)}, not an object name")
    record_ids = header.get("recordIds")
    if not isinstance(record_ids, list) or not record_ids:
        raise MalformedEvent(f"{where}: CDC event without recordIds")
    ids = [_record_id(r, f"{where}: a recordIds entry") for r in record_ids]
    user = header.get("commitUser")
    if user is not None:
        _record_id(user, f"{where}: commitUser")
    values = cdc_values(cdc)
    commit = parse_sf_datetime(header.get("commitTimestamp"))
    stamp = values.get("SystemModstamp") or values.get("LastModifiedDate")
    modstamp = parse_sf_datetime(_text(stamp, f"{where}: LastModifiedDate") if stamp else None)
    return [
        ChangeEvent(
            channel=channel,
            replay_id=replay_id if i == 0 else None,
            source="stream",
            sobject_type=entity,
            record_id=record_id,
            change_type=change_type,
            event_created_at=created or commit,
            modstamp=modstamp or commit,
            fields={**values, "Id": record_id},
            payload=payload,
            payload_text=payload_text,
        )
        for i, record_id in enumerate(ids)
    ]


def raw_text(message: Any) -> tuple[str, bool]:
    """The message as JSON text (NaN and inf as JavaScript writes them, anything else by its
    repr), cut to MAX_RAW_CHARS; and whether it was cut."""
    try:
        text = json.dumps(message, default=repr, ensure_ascii=True, check_circular=True)
    except (ValueError, TypeError, RecursionError):
        text = repr(message)
    return text[:MAX_RAW_CHARS], len(text) > MAX_RAW_CHARS


def malformed(message: Any, error: MalformedEvent) -> ChangeEvent:
    """A message we cannot read is still stored: its raw text and the error (its entry fails
    with the reason). It keeps the message's replay id when that can be read, so the channel's
    cursor moves past it; without one it is keyed by its content."""
    channel, replay_id = "(unreadable channel)", None
    if isinstance(message, Mapping):
        try:
            channel = _channel(message)
            data = message.get("data")
            event = data.get("event") if isinstance(data, Mapping) else None
            if isinstance(event, Mapping):
                replay_id = _replay_id(event.get("replayId"))
        except MalformedEvent:
            pass
    raw, cut = raw_text(message)
    payload: dict[str, Any] = {"raw": raw}
    if cut:
        payload["raw_truncated"] = True
    return unreadable(channel, replay_id, payload, str(error))


def unreadable(
    channel: str, replay_id: int | None, payload: dict[str, Any], error: str
) -> ChangeEvent:
    """The stored form of any event that cannot be read (either transport): what was received
    and the error in words; its entry fails with `malformed_event`."""
    return ChangeEvent(
        channel=channel,
        replay_id=replay_id,
        source="stream",
        sobject_type="",
        record_id=None,
        change_type="malformed",
        event_created_at=None,
        modstamp=None,
        fields={},
        payload={**payload, "_error": error[:1000]},
        error=error[:1000],
    )


def from_polled_record(sobject: str, record: Mapping[str, Any], channel: str) -> ChangeEvent:
    """A record returned by a SystemModstamp query, as a change."""
    values = _clean(record)
    modstamp = parse_sf_datetime(values.get("SystemModstamp"))
    if not values.get("Id") or modstamp is None:
        raise MalformedEvent(f"a polled {sobject} record needs Id and SystemModstamp")
    if values.get("IsDeleted"):
        change_type = "deleted"
    elif values.get("CreatedDate") and values.get("CreatedDate") == values.get("LastModifiedDate"):
        change_type = "created"
    else:
        change_type = "updated"
    return ChangeEvent(
        channel=channel,
        replay_id=None,
        source="poll",
        sobject_type=sobject,
        record_id=values["Id"],
        change_type=change_type,
        event_created_at=modstamp,
        modstamp=modstamp,
        fields=values,
        payload={"sobject": sobject, "record": values},
    )


def latest(events: Iterable[ChangeEvent]) -> dict[str, ChangeEvent]:
    """The event with the highest replay id per channel (the cursor's next position)."""
    best: dict[str, ChangeEvent] = {}
    for ev in events:
        if ev.replay_id is None:
            continue
        cur = best.get(ev.channel)
        if cur is None or (cur.replay_id is not None and ev.replay_id > cur.replay_id):
            best[ev.channel] = ev
    return best
