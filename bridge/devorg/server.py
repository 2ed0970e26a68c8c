"""The local org's HTTPS server (aiohttp): OAuth, REST, streaming and the control API.

`run(host, port, data_dir)` serves until SIGTERM/SIGINT. On first start it creates the org
(org id, connected app, users) and the key material in the data dir and writes devorg.json,
the file clients read to connect.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import json
import logging
import signal
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.devorg import certs, metadata, sales
from bridge.devorg.latency import middleware as latency_middleware
from bridge.devorg.schema import Schema
from bridge.devorg.state import API_VERSION, DevOrgState, User
from bridge.devorg.strict import StrictMode

log = logging.getLogger("bridge.devorg")

USERS = {
    # role: (username, first name, last name, password)
    "integration": ("integration@sfbridge.devorg", "Integration", "User", "integration-pass-1"),
    "sales": ("sales@sfbridge.devorg", "Sally", "Sales", "sales-pass-1"),
}

STATE_KEY: web.AppKey[DevOrgState] = web.AppKey("devorg_state", DevOrgState)


class DevOrgServer:
    """Everything a request handler needs: state, schema, URLs, key material."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8410,
        package_dir: Path | None = None,
        latency: str = "zero",
        pubsub_port: int | None = None,
    ) -> None:
        self.pubsub_port = pubsub_port
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        url_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self.base_url = f"https://{url_host}:{port}"
        self.rest: Any = None  # the REST handlers (rest.setup), for reset
        self.keys = certs.ensure_key_material(self.data_dir)
        self.jwt_public_key = certs.jwt_public_key(self.keys)
        self.schema = Schema()
        if package_dir and package_dir.is_dir():
            metadata.load_package(self.schema, package_dir)
        self.deployments = metadata.Deployments(self.data_dir)
        self.deployments.apply(self.schema)
        self.state = DevOrgState(self.data_dir, schema=self.schema)
        self.state.latency.set_default(latency)
        self.strict = StrictMode(self.state, self.schema)
        self.index_fields()
        if self.state.initialize():
            self._create_users()
        self.seed()
        self.info = self._write_info()

    def index_fields(self) -> None:
        for obj in self.schema.objects.values():
            self.state.set_indexed_fields(obj.name, self.schema.indexed_fields(obj))

    def deploy(self, body: Any) -> list[str]:
        """Deploy custom objects and fields now (`POST /__devorg__/metadata`), kept across
        restarts; raises metadata.MetadataError for a definition that cannot be deployed."""
        deployed = self.deployments.add(self.schema, body)
        self.index_fields()
        return deployed

    def seed(self) -> None:
        """Put back what every org has from the start (after a first start or a reset)."""
        integration = self.state.user_by_role("integration")
        assert integration is not None
        stamp = self.state.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        with self.state.transaction() as tx:
            sales.seed(self.state, tx, integration.id, stamp)

    def _create_users(self) -> None:
        now = self.state.clock.now()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        with self.state.transaction() as tx:
            for role, (username, first, last, password) in USERS.items():
                uid = self.state.new_id("005")
                user = User(uid, username, password, f"{first} {last}", username, role)
                self.state.add_user(user)
                tx.put(
                    "User",
                    {
                        "Id": uid,
                        "IsDeleted": False,
                        "Username": username,
                        "FirstName": first,
                        "LastName": last,
                        "Name": f"{first} {last}",
                        "Email": username,
                        "Alias": (first[:1] + last[:4]).lower(),
                        "CommunityNickname": username.split("@")[0],
                        "IsActive": True,
                        "TimeZoneSidKey": "GMT",
                        "LocaleSidKey": "en_US",
                        "EmailEncodingKey": "UTF-8",
                        "LanguageLocaleKey": "en_US",
                        "ProfileId": "00e8d0000000001AAA",
                        "UserType": "Standard",
                        "Title": "Integration" if role == "integration" else "Account Executive",
                        "CreatedDate": stamp,
                        "CreatedById": uid,
                        "LastModifiedDate": stamp,
                        "LastModifiedById": uid,
                        "SystemModstamp": stamp,
                    },
                )

    def _write_info(self) -> dict[str, Any]:
        info = {
            "instance_url": self.base_url,
            "login_url": self.base_url,
            "org_id": self.state.org_id,
            "api_version": API_VERSION,
            "client_id": self.state.client_id,
            "client_secret": self.state.client_secret,
            "ca_path": str(self.keys.ca_path.resolve()),
            "jwt_private_key_path": str(self.keys.jwt_private_key_path.resolve()),
            "jwt_certificate_path": str(self.keys.jwt_certificate_path.resolve()),
            "pubsub_url": f"{self.base_url.rsplit(':', 1)[0]}:{self.pubsub_port}"
            if self.pubsub_port
            else None,
            "users": {u.role: u.public() for u in self.state.users.values() if u.role in USERS},
        }
        path = self.data_dir / "devorg.json"
        path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return info

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.keys.server_cert_path, self.keys.server_key_path)
        return ctx

    # -- the application --------------------------------------------------------------------

    def build_app(self) -> web.Application:
        from bridge.devorg import bulk, control, rest, soap
        from bridge.devorg.oauth import OAuth

        # latency first, so an injected fault takes a round trip too; strict innermost
        app = web.Application(
            middlewares=[
                latency_middleware(self.state.latency),
                self._faults_middleware,
                self.strict.middleware,
            ],
            client_max_size=64 * 1024 * 1024,
        )
        app[STATE_KEY] = self.state
        app.router.add_routes(OAuth(self).routes())
        bulk.setup(app, self)  # before REST: its catch-all would take /jobs/ too
        rest.setup(app, self)
        soap.setup(app, self)
        control.setup(app, self)
        try:  # the Bayeux server, built by the streaming side
            streaming = importlib.import_module("bridge.devorg.streaming")
        except ImportError:
            streaming = None
        if streaming is not None:
            streaming.setup(app, self.state)
        if self.pubsub_port:
            from bridge.devorg import pubsub

            pubsub.setup(app, self, self.pubsub_port)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, app: web.Application) -> None:
        self.state.close()

    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path.startswith("/__devorg__/"):
            if not _is_loopback(request.remote):
                return web.json_response(
                    {"error": "the control API answers loopback clients only"}, status=403
                )
            return await handler(request)
        # The streaming side applies its own faults (drops belong to the Bayeux protocol).
        if not path.startswith("/cometd"):
            fault = self.state.faults.check(path, request.method)
            if fault is not None:
                if fault.latency_ms:
                    await asyncio.sleep(fault.latency_ms / 1000)
                usage = {
                    "Sforce-Limit-Info": f"api-usage={self.state.api_usage}/"
                    f"{self.state.daily_api_limit}"
                }
                if fault.kind == "error":
                    return web.json_response(
                        [{"message": fault.message, "errorCode": fault.error_code}],
                        status=fault.status,
                        headers=usage,
                    )
                if fault.kind == "status":
                    return web.Response(
                        status=fault.status,
                        text=f"<html><body>HTTP {fault.status}</body></html>",
                        content_type="text/html",
                        headers=usage,
                    )
                if fault.kind == "drop":
                    # The connection dies without an answer, as a network failure would.
                    if request.transport is not None:
                        request.transport.abort()
                    raise asyncio.CancelledError
        return await handler(request)


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def run(
    host: str,
    port: int,
    data_dir: Path,
    *,
    package_dir: Path | None = None,
    latency: str = "zero",
    pubsub_port: int | None = None,
    orgs: int = 1,
) -> None:
    """Serve the local org until SIGTERM/SIGINT (and the Pub/Sub API on `pubsub_port`); with
    `orgs` > 1, that many separate orgs (own org id, users, records, streams) in one process,
    on consecutive ports from `port` (and from `pubsub_port`), each with its data in
    ``data_dir/org-<n>`` (for fleets: benchmarks of many orgs)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    servers = [
        DevOrgServer(
            Path(data_dir) if orgs == 1 else Path(data_dir) / f"org-{n + 1}",
            host=host,
            port=port + n,
            package_dir=package_dir,
            latency=latency,
            pubsub_port=pubsub_port + n if pubsub_port else None,
        )
        for n in range(orgs)
    ]
    asyncio.run(_serve(servers))


async def _serve(servers: list[DevOrgServer]) -> None:
    runners = []
    for server in servers:
        runner = web.AppRunner(
            server.build_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, server.host, server.port, ssl_context=server.ssl_context())
        await site.start()
        runners.append(runner)
        print(f"devorg: serving {server.base_url} (data dir {server.data_dir})", flush=True)
        if server.pubsub_port:
            print(f"devorg: Pub/Sub API on {server.info['pubsub_url']} (gRPC, TLS)", flush=True)
        if len(servers) == 1:
            print(f"devorg: CA certificate {server.keys.ca_path.resolve()}", flush=True)
            details = (server.data_dir / "devorg.json").resolve()
            print(f"devorg: connection details {details}", flush=True)
    if len(servers) > 1:
        print(f"devorg: {len(servers)} orgs ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for runner in runners:
        await runner.cleanup()
    print("devorg: stopped", flush=True)
