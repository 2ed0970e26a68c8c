"""Change events as the bridge stores them: parsed from Bayeux messages or polled records.

Pure functions (no I/O). A change is identified by its `change_key`: the record id plus its
SystemModstamp, so the same change delivered by streaming and by polling is stored once.
Deletes carry no new SystemModstamp in a PushTopic event, so they are keyed by channel and
replay id instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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

    @property
    def change_key(self) -> str:
        return change_key(self)


def parse_sf_datetime(value: Any) -> datetime | None:
    """Salesforce datetimes: ``2024-05-01T10:00:00.000+0000``, ``...Z`` or epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # +0000 -> +00:00
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedEvent(f"'{value}' is not a Salesforce datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_modstamp(value: datetime) -> str:
    """Millisecond precision in UTC, the precision of SystemModstamp."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


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


def from_bayeux(message: Mapping[str, Any], topic_objects: Mapping[str, str]) -> list[ChangeEvent]:
    """Events in one Bayeux data message (a PushTopic or a CDC channel).

    `topic_objects` maps channel -> object name (from the PushTopic's query), used when the
    record id does not tell the object. A CDC event may name several records: one change each,
    the first keeps the replay id (the others are identified by record id + modstamp).
    """
    channel = str(message.get("channel", ""))
    data = message.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("event"), Mapping):
        raise MalformedEvent(f"message on {channel or '(no channel)'} has no data.event")
    event = data["event"]
    try:
        replay_id = int(event["replayId"])
    except (KeyError, TypeError, ValueError):
        raise MalformedEvent(f"message on {channel} has no numeric replayId") from None
    created = parse_sf_datetime(event.get("createdDate"))
    payload = dict(message)
    if isinstance(data.get("sobject"), Mapping):
        record = _clean(data["sobject"])
        change_type = str(event.get("type", ""))
        if change_type not in CHANGE_TYPES:
            raise MalformedEvent(f"replayId {replay_id} on {channel}: unknown type '{change_type}'")
        record_id = record.get("Id")
        sobject = sobject_for_id(record_id) or topic_objects.get(channel)
        if not sobject:
            raise MalformedEvent(f"replayId {replay_id} on {channel}: cannot tell the object")
        return [
            ChangeEvent(
                channel=channel,
                replay_id=replay_id,
                source="stream",
                sobject_type=sobject,
                record_id=record_id,
                change_type=change_type,
                event_created_at=created,
                modstamp=parse_sf_datetime(record.get("SystemModstamp")),
                fields=record,
                payload=payload,
            )
        ]
    cdc = data.get("payload")
    if isinstance(cdc, Mapping) and isinstance(cdc.get("ChangeEventHeader"), Mapping):
        return from_cdc(channel, replay_id, created, cdc, payload)
    raise MalformedEvent(f"replayId {replay_id} on {channel}: neither a PushTopic nor a CDC event")


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
) -> list[ChangeEvent]:
    """The changes one CDC payload names (one per record id). `replay_id` None: the transport's
    replay ids are not numbers (the Pub/Sub API's), so every change is keyed by record and
    time."""
    header = cdc["ChangeEventHeader"]
    change_type = _CDC_TYPES.get(str(header.get("changeType", "")))
    if header.get("changeType") == "GAP_OVERFLOW":
        # More than 100,000 changes in one transaction: neither values nor record ids.
        raise MalformedEvent(
            f"replayId {replay_id} on {channel}: overflow event (a transaction changed too many "
            f"{header.get('entityName')} records to report each); catch up with "
            f"`sfbridge poll --since <its time> --object {header.get('entityName')}`"
        )
    if change_type is None:
        raise MalformedEvent(f"replayId {replay_id} on {channel}: {header.get('changeType')} event")
    values = cdc_values(cdc)
    commit = parse_sf_datetime(header.get("commitTimestamp"))
    modstamp = parse_sf_datetime(values.get("SystemModstamp") or values.get("LastModifiedDate"))
    sobject = str(header.get("entityName", ""))
    out = []
    for i, record_id in enumerate(header.get("recordIds") or []):
        out.append(
            ChangeEvent(
                channel=channel,
                replay_id=replay_id if i == 0 else None,
                source="stream",
                sobject_type=sobject,
                record_id=record_id,
                change_type=change_type,
                event_created_at=created or commit,
                modstamp=modstamp or commit,
                fields={**values, "Id": record_id},
                payload=payload,
            )
        )
    if not out:
        raise MalformedEvent(f"replayId {replay_id} on {channel}: CDC event without recordIds")
    return out


def malformed(message: Mapping[str, Any], error: MalformedEvent) -> ChangeEvent:
    """A message we cannot read is still stored (and its entry fails with the reason)."""
    channel = str(message.get("channel", ""))
    data: Mapping[str, Any] = message.get("data") or {}
    if not isinstance(data, Mapping):
        data = {}
    event: Mapping[str, Any] = data.get("event") or {}
    if not isinstance(event, Mapping):
        event = {}
    try:
        replay_id: int | None = int(event["replayId"])
    except (KeyError, TypeError, ValueError):
        replay_id = None
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
        payload=dict(message),
        error=str(error),
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
