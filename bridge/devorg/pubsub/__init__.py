"""The local org's Pub/Sub API: gRPC over TLS on its own port (``sfbridge devorg
--pubsub-port``), with the org's certificate and sessions.

- `avro.py`: change event and platform event schemas, Avro encoding, the field bitmaps;
- `bus.py`: the topics and their retained events, made from the org's record changes;
- `service.py`: the gRPC service (GetTopic, GetSchema, Subscribe, Publish);
- `control.py`: ``/__devorg__/pubsub`` (drop streams, inject events, gap events);
- `setup()` (here): starts and stops the gRPC server with the org's aiohttp application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from bridge.devorg.pubsub import control
from bridge.devorg.pubsub.bus import EventBus
from bridge.devorg.pubsub.service import PubSubService
from bridge.salesforce.pubsub_api import pubsub_api_pb2_grpc as pb2_grpc

if TYPE_CHECKING:
    from bridge.devorg.server import DevOrgServer


def setup(app: web.Application, server: DevOrgServer, port: int) -> EventBus:
    """Serve the Pub/Sub API on ``server.host:port`` while the application runs."""
    bus = EventBus(server.state, server.data_dir)
    server.state.add_listener(bus)
    service = PubSubService(server.state, bus, server.base_url)
    holder: dict[str, Any] = {}
    app.router.add_route("*", "/__devorg__/pubsub", control.handler(bus, service))

    @web.middleware
    async def persist_events(request: web.Request, handler: Any) -> web.StreamResponse:
        # the change events of a write are on disk before its HTTP response goes out
        try:
            return await handler(request)
        finally:
            bus.flush()

    app.middlewares.append(persist_events)

    async def on_startup(_app: web.Application) -> None:
        import asyncio

        bus.loop = asyncio.get_running_loop()
        grpc_server = grpc.aio.server()
        pb2_grpc.add_PubSubServicer_to_server(service, grpc_server)
        key = server.keys.server_key_path.read_bytes()
        cert = server.keys.server_cert_path.read_bytes()
        credentials = grpc.ssl_server_credentials([(key, cert)])
        bound = grpc_server.add_secure_port(f"{server.host}:{port}", credentials)
        if not bound:
            raise OSError(f"cannot listen on {server.host}:{port} for the Pub/Sub API")
        await grpc_server.start()
        holder["server"] = grpc_server

    async def on_shutdown(_app: web.Application) -> None:
        grpc_server = holder.get("server")
        if grpc_server is not None:
            await grpc_server.stop(grace=0.5)

    async def on_cleanup(_app: web.Application) -> None:
        bus.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return bus
