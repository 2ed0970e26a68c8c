"""The local org's Pub/Sub API service (grpc.aio, on the org's event loop).

GetTopic, GetSchema, Subscribe (bidirectional, pull-based: the server sends at most as many
events as the client has requested with ``num_requested``, keepalive empty batches with the
latest replay id), Publish for platform events. Every call carries the metadata
``accesstoken`` (a session of the org's OAuth server), ``instanceurl`` and ``tenantid`` (the
org id). Errors are gRPC statuses with Salesforce's error code in the trailing metadata
``error-code`` (Pub/Sub API Developer Guide, "Handle Errors", "Retry Long-Lived RPC Calls
After an Error Occurs"): an expired session is UNAUTHENTICATED, a replay id outside the
retention window INVALID_ARGUMENT with ``sfdc.platform.eventbus.grpc.subscription.fetch.
replayid.corrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from bridge.devorg.pubsub import avro
from bridge.devorg.pubsub.bus import EventBus, replay_bytes, replay_seq
from bridge.salesforce.pubsub_api import pubsub_api_pb2 as pb2
from bridge.salesforce.pubsub_api import pubsub_api_pb2_grpc as pb2_grpc

if TYPE_CHECKING:
    from bridge.devorg.state import DevOrgState, User

log = logging.getLogger("bridge.devorg.pubsub")

#: An empty batch goes out after this long without events (Salesforce: within 270 s).
KEEPALIVE_SECONDS = float(os.environ.get("SFBRIDGE_DEVORG_PUBSUB_KEEPALIVE_S", "270"))
#: Most events one FetchResponse carries, and most a client may have requested at once.
MAX_BATCH = 100
MAX_REQUESTED = 100

AUTH_ERROR = "sfdc.platform.eventbus.grpc.service.auth.error"
REPLAY_CORRUPTED = "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
TOPIC_NOT_FOUND = "sfdc.platform.eventbus.grpc.service.topic.not.found"
SCHEMA_NOT_FOUND = "sfdc.platform.eventbus.grpc.schema.not.found"
INVALID_REQUEST = "sfdc.platform.eventbus.grpc.fetch.request.invalid"


async def _abort(context: Any, code: grpc.StatusCode, error_code: str, message: str) -> None:
    rpc_id = str(uuid.uuid4())
    context.set_trailing_metadata((("error-code", error_code), ("rpc-id", rpc_id)))
    await context.abort(code, f"{message} rpcId: {rpc_id}")


class PubSubService(pb2_grpc.PubSubServicer):
    def __init__(self, state: DevOrgState, bus: EventBus, instance_url: str) -> None:
        self.state = state
        self.bus = bus
        self.instance_url = instance_url.rstrip("/")
        #: the live Subscribe streams: their flags (`drop`) and wake-up callbacks
        self.streams: list[dict[str, Any]] = []

    def drop_streams(self) -> int:
        """End every Subscribe stream with UNAVAILABLE, as a server restart would."""
        for stream in self.streams:
            stream["drop"] = True
            stream["wake"]()
        return len(self.streams)

    # -- auth -------------------------------------------------------------------------------

    def _user(self, context: Any) -> tuple[User | None, str]:
        meta = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        token = str(meta.get("accesstoken", ""))
        if not token:
            return None, "accesstoken is missing from the request metadata"
        if str(meta.get("tenantid", "")) != self.state.org_id:
            return None, "tenantid does not name this org"
        if str(meta.get("instanceurl", "")).rstrip("/") != self.instance_url:
            return None, "instanceurl does not match the org"
        user = self.state.user_for_token(token)
        if user is None:
            return None, "the session is invalid or expired"
        return user, ""

    async def _authenticate(self, context: Any) -> User:
        user, problem = self._user(context)
        if user is None:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, AUTH_ERROR, problem)
        assert user is not None
        return user

    async def _topic(self, context: Any, topic: str) -> avro.EventSchema:
        schema = self.bus.topic_schema(topic)
        if schema is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                TOPIC_NOT_FOUND,
                f"Topic {topic} does not exist or you don't have access to it.",
            )
        assert schema is not None
        return schema

    # -- unary calls ------------------------------------------------------------------------

    async def GetTopic(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC names
        await self._authenticate(context)
        schema = await self._topic(context, request.topic_name)
        return pb2.TopicInfo(
            topic_name=request.topic_name,
            tenant_guid=self.state.org_id,
            can_publish=self.bus.is_platform_event(request.topic_name),
            can_subscribe=True,
            schema_id=schema.schema_id,
            rpc_id=str(uuid.uuid4()),
        )

    async def GetSchema(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._authenticate(context)
        schema = self.bus.schema_by_id(request.schema_id)
        if schema is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                SCHEMA_NOT_FOUND,
                f"Schema {request.schema_id} was not found.",
            )
        assert schema is not None
        return pb2.SchemaInfo(
            schema_json=schema.schema_json, schema_id=schema.schema_id, rpc_id=str(uuid.uuid4())
        )

    async def Publish(self, request: Any, context: Any) -> Any:  # noqa: N802
        user = await self._authenticate(context)
        topic = request.topic_name
        schema = await self._topic(context, topic)
        if not self.bus.is_platform_event(topic):
            await _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "sfdc.platform.eventbus.grpc.service.publish.denied",
                f"Publishing to {topic} is not allowed.",
            )
        results = []
        good: list[tuple[int, bytes]] = []
        for i, event in enumerate(request.events):
            error = None
            if event.schema_id != schema.schema_id:
                error = f"schema id {event.schema_id} is not the topic's schema"
            else:
                try:
                    avro.decode(schema, event.payload)
                except Exception as exc:  # noqa: BLE001 - any undecodable payload
                    error = f"the payload does not match the schema: {exc}"
            if error is None:
                good.append((i, event.payload))
            results.append(
                pb2.PublishResult(
                    correlation_key=event.id or str(uuid.uuid4()),
                    error=pb2.Error(code=pb2.ErrorCode.PUBLISH, msg=error) if error else None,
                )
            )
        seqs = self.bus.publish(topic, schema, [p for _, p in good])
        for (i, _), seq in zip(good, seqs, strict=True):
            results[i].replay_id = replay_bytes(seq)
        log.info("pubsub: %s published %d event(s) on %s", user.username, len(seqs), topic)
        return pb2.PublishResponse(
            results=results, schema_id=schema.schema_id, rpc_id=str(uuid.uuid4())
        )

    # -- Subscribe --------------------------------------------------------------------------

    async def Subscribe(  # noqa: N802
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        await self._authenticate(context)
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        topic = first.topic_name
        await self._topic(context, topic)
        position = await self._start(context, topic, first)
        # the subscription is in place: say so at once (headers before the first batch)
        await context.send_initial_metadata((("rpc-id", str(uuid.uuid4())),))
        state = {"requested": 0}
        wakeup = asyncio.Event()
        problem: list[str] = []

        def add(request: Any) -> None:
            if request.topic_name and request.topic_name != topic:
                problem.append(f"topic {request.topic_name} is not the subscribed {topic}")
            elif request.num_requested < 0:
                problem.append("num_requested must not be negative")
            else:
                state["requested"] = min(state["requested"] + request.num_requested, MAX_REQUESTED)
            wakeup.set()

        async def read_requests() -> None:
            async for request in request_iterator:
                add(request)

        add(first)
        reader = asyncio.ensure_future(read_requests())
        self.bus.add_waiter(wakeup.set)
        me = {"drop": False, "wake": wakeup.set, "topic": topic}
        self.streams.append(me)
        try:
            while True:
                if me["drop"]:
                    await _abort(
                        context,
                        grpc.StatusCode.UNAVAILABLE,
                        "sfdc.platform.eventbus.grpc.service.unavailable",
                        "The server closed the stream. Resubscribe.",
                    )
                if problem:
                    await _abort(
                        context, grpc.StatusCode.INVALID_ARGUMENT, INVALID_REQUEST, problem[0]
                    )
                user, why = self._user(context)
                if user is None:
                    await _abort(context, grpc.StatusCode.UNAUTHENTICATED, AUTH_ERROR, why)
                if state["requested"] > 0:
                    batch = self.bus.after(topic, position, min(state["requested"], MAX_BATCH))
                    if batch:
                        position = batch[-1].seq
                        state["requested"] -= len(batch)
                        yield pb2.FetchResponse(
                            events=[_consumer_event(e) for e in batch],
                            latest_replay_id=replay_bytes(position),
                            rpc_id=str(uuid.uuid4()),
                            pending_num_requested=state["requested"],
                        )
                        continue
                wakeup.clear()
                try:
                    await asyncio.wait_for(wakeup.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    if reader.done() and reader.exception() is None and state["requested"] == 0:
                        return  # the client closed its side and wants nothing more
                    latest = max(position, self.bus.latest(topic))
                    if not self.bus.after(topic, position, 1):
                        position = latest  # nothing in between: the keepalive moves it on
                    yield pb2.FetchResponse(
                        latest_replay_id=replay_bytes(position),
                        rpc_id=str(uuid.uuid4()),
                        pending_num_requested=state["requested"],
                    )
        finally:
            self.streams.remove(me)
            self.bus.remove_waiter(wakeup.set)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _start(self, context: Any, topic: str, first: Any) -> int:
        preset = first.replay_preset
        if preset == pb2.ReplayPreset.EARLIEST:
            return self.bus.earliest(topic)
        if preset == pb2.ReplayPreset.CUSTOM:
            seq = replay_seq(bytes(first.replay_id))
            if seq is None or not self.bus.valid_position(topic, seq):
                await _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    REPLAY_CORRUPTED,
                    "The Replay ID validation failed. Ensure the Replay ID is valid.",
                )
            assert seq is not None
            return seq
        return self.bus.latest(topic)


def _consumer_event(event: Any) -> Any:
    return pb2.ConsumerEvent(
        event=pb2.ProducerEvent(
            id=event.event_id, schema_id=event.schema_id, payload=event.payload
        ),
        replay_id=replay_bytes(event.seq),
    )
