"""``/__devorg__/pubsub``: the Pub/Sub side of the control API (loopback clients only).

GET: the topics with their retained events, the live Subscribe streams, the last replay id.
POST a JSON object with any of:

- ``{"drop_streams": true}``: end every Subscribe stream with UNAVAILABLE (a server restart);
- ``{"inject": {"topic": "/data/LeadChangeEvent", "payload_hex": "…", "schema_id": "…"}}``:
  an event with that payload as it is (no schema reads it, unless it is right);
- ``{"gap": {"sobject": "Lead", "change_type": "GAP_OVERFLOW", "record_ids": [...]}}``: a gap
  or overflow event, which the org itself never produces.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.devorg.pubsub.bus import EventBus, replay_bytes
from bridge.devorg.pubsub.service import PubSubService


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def handler(bus: EventBus, service: PubSubService) -> Any:
    async def control(request: web.Request) -> web.Response:
        out: dict[str, Any] = {}
        if request.method == "POST":
            try:
                body = await request.json() if request.can_read_body else {}
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return _bad("the body must be a JSON object")
            if body.get("drop_streams"):
                out["dropped"] = service.drop_streams()
            inject = body.get("inject")
            if inject is not None:
                try:
                    topic = str(inject["topic"])
                    payload = bytes.fromhex(str(inject.get("payload_hex", "")))
                except (KeyError, TypeError, ValueError):
                    return _bad("inject: {topic, payload_hex (hex), schema_id}")
                schema = bus.topic_schema(topic)
                if schema is None:
                    return _bad(f"inject: no topic {topic}")
                seq = bus.inject(topic, str(inject.get("schema_id") or schema.schema_id), payload)
                out["injected"] = replay_bytes(seq).hex()
            gap = body.get("gap")
            if gap is not None:
                try:
                    ids = [str(i) for i in gap.get("record_ids", [])]
                    seqs = bus.gap(str(gap["sobject"]), str(gap["change_type"]), ids)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    return _bad(f"gap: {{sobject, change_type (GAP_*), record_ids}}: {exc}")
                out["gap"] = [replay_bytes(s).hex() for s in seqs]
        out.update(
            topics={t: len(e) for t, e in bus.events.items()},
            streams=len(service.streams),
            last_replay_id=replay_bytes(bus.last_seq).hex(),
        )
        return web.json_response(out)

    return control
