"""A whole inbound bridge on real parts, for the fault suite and the benchmark.

The local org (`DevOrg`), a SQLite store, Redis, and `sfbridge stream` / `sfbridge worker`
as real processes on loopback, configured through the environment like in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, func, select

from bridge import orgs
from bridge.config import load_config
from bridge.devorg.testing import DevOrg
from bridge.receiver.relational import record_fields
from bridge.salesforce.connection import connect
from bridge.store import Store
from bridge.store.models import InboundEvent, SalesEntry
from bridge.streaming.events import format_modstamp, parse_sf_datetime
from bridge.vault import Vault, generate_key
from bridge.vocabulary import STREAMED_OBJECTS
from tests.services import wait_for

ORG = "acme"

#: Short lapses so faults resolve within seconds (production defaults are in defaults.py).
FAST_ENV = {
    "SFBRIDGE_LEASE_TTL_SECONDS": "2",
    "SFBRIDGE_LEASE_WAIT_SECONDS": "0.2",
    "SFBRIDGE_SWEEP_AFTER_SECONDS": "3",
    "SFBRIDGE_CLAIM_TIMEOUT_SECONDS": "4",
    "SFBRIDGE_SWEEP_EVERY_SECONDS": "1",
    "SFBRIDGE_REDIS_RETRY_MAX_SECONDS": "1",
}


def sfbridge_command() -> list[str]:
    script = Path(sys.executable).parent / "sfbridge"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from bridge.cli import main; main()"]


def config_for(
    org: DevOrg,
    topics: list[str],
    overlap_seconds: int = 5,
    cdc: bool = False,
    pubsub_topics: list[str] | None = None,
    poll_every: int | None = None,
) -> dict[str, Any]:
    """The bridge's config for `org`; with `pubsub_topics`, streamed over the org's Pub/Sub
    API (it must run with a Pub/Sub port)."""
    info = org.info
    streaming: dict[str, Any] = {"topics": topics, "cdc": cdc}
    if pubsub_topics:
        streaming.update(
            transport="pubsub",
            pubsub_endpoint=f"127.0.0.1:{org.pubsub_port}",
            pubsub_topics=pubsub_topics,
        )
    return {
        "orgs": {
            ORG: {
                "login_url": info["login_url"],
                "client_id": info["client_id"],
                "username": info["users"]["integration"]["username"],
                "private_key_file": info["jwt_private_key_path"],
                "ca_bundle": info["ca_path"],
                "api_version": info["api_version"],
                "programs": [{"key": "main", "name": "Main"}],
                "receiver": {
                    "program": "main",
                    # Standard fields only: the org may run without the package's fields.
                    "target_match": {"direct_fields": []},
                    "member_match": {
                        "referral_code": [],
                        "member_email": [],
                        "member_external_id": [],
                    },
                },
                "streaming": streaming,
                "polling": {
                    "overlap_seconds": overlap_seconds,
                    **({"every": poll_every} if poll_every else {}),
                },
            }
        }
    }


@dataclass
class Bridge:
    """One bridge installation in `root`, connected to `org` (the config's org `acme`)."""

    root: Path
    org: DevOrg
    redis_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    topics: list[str] = field(default_factory=lambda: ["SFB_Lead", "SFB_Contact"])
    fast: bool = True  # short lapses (FAST_ENV); False: the production defaults
    overlap_seconds: int = 5
    cdc: bool = False
    pubsub_topics: list[str] | None = None  # stream over the Pub/Sub API
    poll_every: int | None = None  # the safety-net poll's interval (None: the default)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_url = f"sqlite:///{self.root / 'sfbridge.db'}"
        self.config_path = self.root / "sfbridge.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                config_for(
                    self.org,
                    self.topics,
                    self.overlap_seconds,
                    self.cdc,
                    self.pubsub_topics,
                    self.poll_every,
                )
            )
        )
        self.key = generate_key()
        self.store = Store(self.db_url)
        self.config = load_config(str(self.config_path))

    @property
    def reader(self) -> Any:
        """Read-only queries: on SQLite a plain engine (deferred transactions), so watching
        progress does not take the write lock the bridge's own sessions take."""
        if not hasattr(self, "_reader"):
            if self.db_url.startswith("sqlite"):
                self._reader = create_engine(self.db_url, connect_args={"timeout": 30})
            else:
                self._reader = self.store.engine
        return self._reader

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SFBRIDGE_")}
        env.update(
            SFBRIDGE_DATABASE_URL=self.db_url,
            SFBRIDGE_REDIS_URL=self.redis_url,
            SFBRIDGE_CONFIG=str(self.config_path),
            SFBRIDGE_ENCRYPTION_KEYS=self.key,
            SFBRIDGE_SECRET_KEY="test-secret",
            SFBRIDGE_INSTANCE_DIR=str(self.root / "instance"),
            PYTHONUNBUFFERED="1",
        )
        if self.fast:
            env.update(FAST_ENV)
        env.update(self.extra_env)
        return env

    # ---- installation -----------------------------------------------------------------------

    def install(self) -> Bridge:
        """Migrate, connect the org with the JWT flow and create the PushTopics."""
        self.store.upgrade()
        self._connect(ORG, self.org)
        return self

    def add_org(self, name: str, org: DevOrg) -> None:
        """Another org of the same installation (a fleet): in the config, connected, topics."""
        config = yaml.safe_load(self.config_path.read_text())
        config["orgs"][name] = config_for(org, self.topics, self.overlap_seconds, self.cdc)["orgs"][
            ORG
        ]
        self.write_config(config)
        self._connect(name, org)

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        tmp.replace(self.config_path)  # a process re-reading it never sees half a file
        self.config = load_config(str(self.config_path))

    def _connect(self, name: str, org: DevOrg) -> None:
        org_config = self.config.orgs[name]
        pem = orgs.read_private_key(str(org_config.private_key_file))
        sf_org = connect(orgs.jwt_credentials(name, org_config, pem))
        orgs.save_connection(
            self.store, Vault((self.key,)), name, org_config, sf_org,
            private_key_pem=pem, auth_method="jwt",
        )  # fmt: skip
        self.ensure_topics(org, name)

    def ensure_topics(self, org: DevOrg | None = None, name: str = ORG) -> None:
        sf = (org or self.org).sf("integration")
        existing = {r["Name"] for r in sf.query_all("SELECT Name FROM PushTopic")["records"]}
        org_config = self.config.orgs[name]
        for obj in STREAMED_OBJECTS:
            topic = f"SFB_{obj}"
            if topic in existing:
                continue
            sf.PushTopic.create(
                {
                    "Name": topic,
                    "Query": f"SELECT {', '.join(record_fields(org_config, obj))} FROM {obj}",
                    "ApiVersion": float(org_config.api_version),
                    "NotifyForFields": "Referenced",
                    "NotifyForOperationCreate": True,
                    "NotifyForOperationUpdate": True,
                    "NotifyForOperationDelete": True,
                    "NotifyForOperationUndelete": True,
                }
            )

    # ---- processes --------------------------------------------------------------------------

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child writes it
        try:
            proc = subprocess.Popen(
                [*sfbridge_command(), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=self.root,
            )
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def start_subscribed(self) -> subprocess.Popen[bytes]:
        """`sfbridge stream`, once it has subscribed to the Lead topic."""
        proc = self.start("stream", "stream")
        wait_until(
            lambda: "subscribed to /topic/SFB_Lead" in self.log("stream"),
            20,
            "the subscriber to subscribe",
            lambda: self.log("stream"),
        )
        return proc

    def log(self, name: str) -> str:
        try:
            return (self.root / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, name: str) -> None:
        """kill -9: no chance to clean up."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str, timeout: float = 20) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{name} did not stop within {timeout}s on SIGTERM") from None

    def close(self) -> None:
        """SIGTERM to every process first, then wait for each: they stop side by side (each
        takes a second or more: a lease to release, rq's scheduler to join), not one by one."""
        running = [p for p in self.procs.values() if p.poll() is None]
        self.procs.clear()
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if hasattr(self, "_reader"):
            self._reader.dispose()
        self.store.dispose()

    # ---- what was stored --------------------------------------------------------------------

    def stored_keys(self) -> Counter[str]:
        """change_key -> number of entries made from events with that key."""
        with self.reader.connect() as s:
            rows = s.execute(
                select(InboundEvent.change_key, func.count(SalesEntry.id))
                .join(SalesEntry, SalesEntry.inbound_event_id == InboundEvent.id)
                .group_by(InboundEvent.change_key)
            ).all()
        return Counter({key: n for key, n in rows})

    def event_states(self) -> dict[str, int]:
        with self.reader.connect() as s:
            rows = s.execute(
                select(InboundEvent.state, func.count()).group_by(InboundEvent.state)
            ).all()
        return {state: n for state, n in rows}

    def sources(self) -> dict[str, int]:
        with self.reader.connect() as s:
            rows = s.execute(
                select(InboundEvent.source, func.count()).group_by(InboundEvent.source)
            ).all()
        return {src: n for src, n in rows}

    def entry_count(self) -> int:
        with self.reader.connect() as s:
            return int(s.scalar(select(func.count()).select_from(SalesEntry)) or 0)


# ---- the org side ---------------------------------------------------------------------------


def change_key_of(record: dict[str, Any]) -> str:
    stamp = parse_sf_datetime(record["SystemModstamp"])
    assert stamp is not None
    return f"{record['Id']}@{format_modstamp(stamp)}"


class Writer:
    """Makes changes in the org as the sales user and remembers each one's change_key."""

    def __init__(self, org: DevOrg):
        self.org = org
        self.sf = org.sf("sales")
        self.changes = 0
        self.ids: dict[str, list[str]] = {"Lead": [], "Contact": []}

    def relogin(self) -> None:
        """A new session (after the org clock jumped past the session timeout)."""
        self.sf = self.org.sf("sales")

    def _collection(self, method: str, records: list[dict[str, Any]]) -> list[str]:
        out = []
        for start in range(0, len(records), 200):
            res = self.sf.restful(
                "composite/sobjects",
                method=method,
                json={"allOrNone": True, "records": records[start : start + 200]},
            )
            assert all(r["success"] for r in res), res
            out += [r["id"] for r in res]
        self.changes += len(records)
        return out

    def create(self, sobject: str, n: int, tag: str = "") -> list[str]:
        base = len(self.ids[sobject])
        if sobject == "Lead":
            records = [
                {"attributes": {"type": "Lead"}, "LastName": f"Lead{tag}{base + i}",
                 "Company": "Acme", "Email": f"lead{tag}{base + i}@acme.test"}
                for i in range(n)
            ]  # fmt: skip
        else:
            records = [
                {"attributes": {"type": "Contact"}, "LastName": f"Contact{tag}{base + i}",
                 "Email": f"contact{tag}{base + i}@acme.test"}
                for i in range(n)
            ]  # fmt: skip
        ids = self._collection("POST", records)
        self.ids[sobject] += ids
        return ids

    def update(self, sobject: str, ids: Iterable[str], **values: Any) -> None:
        records = [{"attributes": {"type": sobject}, "Id": i, **values} for i in ids]
        self._collection("PATCH", records)

    def org_keys(self) -> set[str]:
        """The change_key of every record's current state (what must have been stored)."""
        keys = set()
        for obj in ("Lead", "Contact"):
            for rec in self.sf.query_all(f"SELECT Id, SystemModstamp FROM {obj}")["records"]:
                keys.add(change_key_of(rec))
        return keys


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    return wait_for(predicate, timeout, 0.1, what, on_timeout)
