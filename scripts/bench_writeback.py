"""Writeback through the real path: HTTP API -> saved push -> `sfbridge worker` -> local org.

Starts the local org, an embedded Redis, a SQLite store, `sfbridge web` and `sfbridge worker`
processes (as `tests.harness.Bridge` runs them), then, each phase posting to the JSON API
at --rate requests/s from client threads:

1. referral adds (`POST /api/v1/referrals`), one push per job: the web server saves the push
   and the bench enqueues `send_pushes([id])` the moment the API answers (what every push got
   before drains; that web server's own drain requests go to a Redis nobody works on);
2. referral adds, the normal path: the org's drain after the coalescing window;
3. activities (`POST /api/v1/activities`), one push per job, then 4. through the drain, each
   for the people the referral phase before it added (the bridge wrote them: known records);
5. activities for people the bridge never saw, drained at the last window (the WhoId lookup);
   then referral adds and activities (known people) half and half: one drain writes Leads and
   Tasks, both collections in one composite call;
6. Bulk API 2.0: --bulk referral pushes saved while the org's outbound is paused, then
   `sfbridge org resume --outbound`: one drain sends them, above `writeback.bulk_threshold`.

For each it prints the Salesforce API calls per 1,000 pushes (the org's own call stats, for the
integration user), p50/p95 from the API call (the push's `created_at`) to `sent`, and the rate
the API actually took the requests at with the calls scaled to --rate (a drained phase's calls
follow its number of drains, so its length: on a loaded machine the API may not reach --rate).

    scripts/bench_writeback.py [--rate 50] [--referrals 1000] [--activities 1000] [--bulk 10000]
                               [--workers 2] [--web-workers 4] [--latency zero|realistic]
                               [--windows 0.25,1.9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402
import requests  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bridge.devorg.testing import DevOrg  # noqa: E402
from bridge.ports import free_port  # noqa: E402
from bridge.redis_embedded import EmbeddedRedis  # noqa: E402
from bridge.store.models import (  # noqa: E402
    OrgConnection,
    Program,
    Push,
    PushAttempt,
    Referral,
    User,
)
from bridge.users import create_token, create_user  # noqa: E402
from bridge.writeback import enqueue_push, queue_referral_add  # noqa: E402
from tests.harness import ORG, Bridge, sfbridge_command, wait_until  # noqa: E402


def calls_by_endpoint(org: DevOrg) -> dict[str, int]:
    stats = org.control("stats", method="GET")
    user = org.info["users"]["integration"]["username"]
    return dict(stats["api_calls"]["by_user_endpoint"].get(user, {}))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def paced(rate: float, n: int, send: Callable[[int], None]) -> float:
    """Call send(0..n-1) at `rate` per second from a few client threads; returns seconds."""
    started = time.perf_counter()
    lock = threading.Lock()
    nxt = [0]
    errors: list[Exception] = []

    def client() -> None:
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                send(i)
            except Exception as exc:  # reported after the phase, with the server's log
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} requests failed; first: {errors[0]}")
    return time.perf_counter() - started


class Api:
    def __init__(self, port: int, secret: str):
        self.base = f"http://127.0.0.1:{port}/api/v1"
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.local = threading.local()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
            self.local.s.trust_env = False
        r = self.local.s.post(self.base + path, json=body, headers=self.headers, timeout=60)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
        out: dict[str, Any] = r.json()
        return out


def wait_sent(bridge: Bridge, ids: list[int], timeout: float) -> tuple[list[float], list[float]]:
    """Latencies once every push left pending, from the API call (the push's `created_at`): to
    its sent result being saved (the attempt's `at`, after Salesforce answered), and to its
    send beginning (the push's `sent_at`)."""
    saved = (
        select(PushAttempt.push_id, func.max(PushAttempt.at).label("at"))
        .where(PushAttempt.state == "sent", PushAttempt.push_id.in_(ids))
        .group_by(PushAttempt.push_id)
        .subquery()
    )

    def done() -> Any:
        with bridge.reader.connect() as c:
            rows = c.execute(
                select(Push.state, Push.created_at, saved.c.at, Push.sent_at)
                .outerjoin(saved, saved.c.push_id == Push.id)
                .where(Push.id.in_(ids))
            ).all()
        return rows if all(r[0] != "pending" for r in rows) and len(rows) == len(ids) else None

    rows = wait_until(done, timeout, f"{len(ids)} pushes sent")
    bad = [r[0] for r in rows if r[0] != "sent"]
    if bad:
        print(f"  warning: {len(bad)} pushes not sent: {sorted(set(bad))}")
    done_rows = [r for r in rows if r[0] == "sent" and r[2] is not None and r[3] is not None]
    return (
        [(saved_at - created).total_seconds() for _s, created, saved_at, _b in done_rows],
        [(began - created).total_seconds() for _s, created, _a, began in done_rows],
    )


def report(
    label: str, n: int, calls: dict[str, int], lats: tuple[list[float], list[float]], wall: float,
    rate: float, target: float | None,
) -> None:  # fmt: skip
    """One phase's line. The API calls of a drained phase follow the number of drains, so at
    the arrival rate the API reached (on a loaded machine below the target) they are also shown
    scaled to the target rate: calls × rate / target (`target` None: one push per job, whose
    calls do not depend on the rate)."""
    total = sum(calls.values())
    per_1000 = total * 1000 / max(n, 1)
    lat, began = lats
    print(
        f"{label:<34} {n:>6} pushes  API calls {total:>5} = {per_1000:7.1f}"
        f" per 1,000   latency p50 {statistics.median(lat or [0]):5.2f} s  "
        f"p95 {pct(lat, 95):5.2f} s   ({wall:.1f} s)"
    )
    detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))
    print(f"{'':34} {detail}")
    scaled = (
        f"; at {target:g}/s that is {per_1000 * min(rate, target) / target:.1f} per 1,000"
        if target
        else ""
    )
    print(
        f"{'':34} arrived at {rate:.1f}/s{scaled}; to the send's start p50"
        f" {statistics.median(began or [0]):.2f} s p95 {pct(began, 95):.2f} s"
    )


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--referrals", type=int, default=1000)
    parser.add_argument("--activities", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2, help="sfbridge worker processes")
    parser.add_argument("--web-workers", type=int, default=4, help="sfbridge web processes")
    parser.add_argument("--latency", choices=("zero", "realistic"), default="zero")
    parser.add_argument(
        "--windows",
        default="0.25,1.9",
        help="coalescing windows (s) to run the drained phases with, comma separated; the first "
        "is the default (OUTBOUND_WINDOW_SECONDS)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, DevOrg() as org:
        root = Path(tmp)
        if args.latency == "realistic":
            org.control("latency", {"profile": "realistic"})
        redis_server = EmbeddedRedis(root / "redis").start()
        bridge = Bridge(root / "bridge", org, redis_server.url, fast=False)
        try:
            run(args, bridge, org, redis_server.url)
        except Exception:
            for name in ("web", "web-direct"):
                print(f"--- {name} log (last lines) ---\n" + bridge.log(name)[-4000:])
            raise
        finally:
            bridge.close()
            redis_server.stop()


def run(args: argparse.Namespace, bridge: Bridge, org: DevOrg, redis_url: str) -> None:
    bridge.install()
    with bridge.store.session() as s:
        org_id = s.scalar(select(OrgConnection.id).where(OrgConnection.name == ORG))
        s.add(Program(key="main", name="Main", org_connection_id=org_id))
        s.flush()
        user = create_user(s, "bench@example.com", "bench-password-1", "admin", actor="bench")
        secret = create_token(
            s, s.get(User, user.id), "bench", ["referrals:write", "activities:write"], actor="bench"
        ).secret
    worker_redis = redis.Redis.from_url(redis_url)
    direct_port, drain_port = free_port(), free_port()
    # The one-push-per-job web server: its drain requests go to a Redis database no worker reads.
    bridge.start(
        "web-direct", "web", "--port", str(direct_port), "--workers", str(args.web_workers),
        env={"SFBRIDGE_REDIS_URL": "/".join(redis_url.split("/")[:3]) + "/9"},
    )  # fmt: skip
    web_workers = str(args.web_workers)
    bridge.start("web", "web", "--port", str(drain_port), "--workers", web_workers)
    windows = [float(w) for w in args.windows.split(",") if w.strip()]

    def start_workers(window: float) -> None:
        for n in range(args.workers):
            if f"worker{n}" in bridge.procs:
                bridge.stop(f"worker{n}")
            env = {"SFBRIDGE_OUTBOUND_WINDOW_SECONDS": str(window)}
            bridge.start(f"worker{n}", "worker", env=env)

    start_workers(windows[0])
    for port in (direct_port, drain_port):
        wait_until(lambda p=port: _ready(p), 60, f"web on {port}", lambda: bridge.log("web"))
    direct, drained = Api(direct_port, secret), Api(drain_port, secret)
    print(
        f"rate {args.rate:.0f}/s, {args.workers} worker(s), latency profile {args.latency}, "
        f"coalescing windows {', '.join(f'{w:g} s' for w in windows)}\n"
    )

    def referral(api: Api, tag: str, enqueue: bool) -> Callable[[int], None]:
        ids: list[int] = []

        def send(i: int) -> None:
            out = api.post(
                "/referrals",
                {"program": "main", "first_name": "Bench", "last_name": f"{tag} {i}",
                 "email": f"{tag}{i}@bench.example"},
            )  # fmt: skip
            ids.append(out["push"]["id"])
            if enqueue:
                enqueue_push(worker_redis, [out["push"]["id"]])

        send.ids = ids  # type: ignore[attr-defined]
        return send

    def activity(api: Api, tag: str, enqueue: bool, people: str) -> Callable[[int], None]:
        """Activities for the people a referral phase added (`people`: its tag; the bridge
        wrote them, so it knows them), or for "nobody": people the bridge never saw."""
        ids: list[int] = []

        def send(i: int) -> None:
            out = api.post(
                "/activities",
                {"org": ORG, "activity_id": f"{tag}-{i}", "kind": "email",
                 "subject": f"Hello {i}", "occurred_at": "2026-11-20T10:00:00Z",
                 "who_email": f"{people}{i % max(args.referrals, 1)}@bench.example"},
            )  # fmt: skip
            ids.append(out["id"])
            if enqueue:
                enqueue_push(worker_redis, [out["id"]])

        send.ids = ids  # type: ignore[attr-defined]
        return send

    phases: list[tuple[str, int, Any, float | None]] = [
        ("referral adds, one push per job", args.referrals, referral(direct, "r", True), None),
        ("activities, one push per job", args.activities, activity(direct, "a", True, "r"), None),
    ]
    for k, window in enumerate(windows):
        phases += [
            (f"referral adds, drained, {window:g} s", args.referrals,
             referral(drained, f"d{k}x", False), window),
            (f"activities, drained, {window:g} s", args.activities,
             activity(drained, f"b{k}x", False, f"d{k}x"), window),
        ]  # fmt: skip
    phases.append(
        (f"activities, unknown people, {windows[-1]:g} s", args.activities,
         activity(drained, "u", False, "nobody"), windows[-1])
    )  # fmt: skip
    last = len(windows) - 1
    adds, acts = referral(drained, "m", False), activity(drained, "mx", False, f"d{last}x")

    def mixed(i: int) -> None:
        (adds if i % 2 else acts)(i // 2)

    mixed.ids = adds.ids  # type: ignore[attr-defined]
    mixed.all = lambda: adds.ids + acts.ids  # type: ignore[attr-defined]
    phases.append(
        (f"adds + activities, mixed, {windows[-1]:g} s", args.activities, mixed, windows[-1])
    )
    current = windows[0]
    for label, n, send, window in phases:
        if not n:
            continue
        if window is not None and window != current:
            start_workers(window)
            current = window
            time.sleep(3)  # the workers are up and listening
        before = calls_by_endpoint(org)
        started = time.perf_counter()
        posting = paced(args.rate, n, send)
        ids = send.all() if hasattr(send, "all") else send.ids  # type: ignore[attr-defined]
        lat = wait_sent(bridge, ids, 600)
        wall = time.perf_counter() - started
        calls = diff(calls_by_endpoint(org), before)
        report(label, n, calls, lat, wall, n / posting, args.rate if window else None)

    if current != windows[0]:
        start_workers(windows[0])
    if args.bulk:
        bulk_phase(args, bridge, org, org_id)


def bulk_phase(args: argparse.Namespace, bridge: Bridge, org: DevOrg, org_id: int) -> None:
    """Pushes saved while paused, then released by the CLI: one drain, Bulk API 2.0."""
    subprocess.run(
        [*sfbridge_command(), "org", "pause", ORG, "--outbound"], env=bridge.env, check=True,
        capture_output=True,
    )  # fmt: skip
    ids: list[int] = []
    with bridge.store.session() as s:
        conn = s.get(OrgConnection, org_id)
        program = s.scalar(select(Program).where(Program.key == "main"))
        assert conn is not None and program is not None
        config = bridge.config.orgs[ORG]
        for n in range(args.bulk):
            referral = Referral(
                public_id=f"ref_bulk_{n}", program_id=program.id, first_name="Bulk",
                last_name=f"Person {n}", email=f"bulk{n}@bench.example",
            )  # fmt: skip
            s.add(referral)
            s.flush()
            ids.append(queue_referral_add(s, conn, config, referral).id)
    before = calls_by_endpoint(org)
    started = time.perf_counter()
    subprocess.run(
        [*sfbridge_command(), "org", "resume", ORG, "--outbound"], env=bridge.env, check=True,
        capture_output=True,
    )  # fmt: skip
    wait_sent(bridge, ids, 900)
    wall = time.perf_counter() - started
    calls = diff(calls_by_endpoint(org), before)
    ingest = {k: v for k, v in calls.items() if "jobs/ingest" in k}
    lookups = {k: v for k, v in calls.items() if k not in ingest}
    print(
        f"\nBulk API 2.0: {len(ids)} referral writes released by `org resume`, one drain:"
        f" {sum(ingest.values())} Bulk API calls for the writes"
        f" ({sum(ingest.values()) * 10000 / len(ids):.0f} per 10,000; sObject Collections:"
        f" {-(-len(ids) // 200)}), plus {sum(lookups.values())} lookup queries; {wall:.1f} s"
    )
    print(f"{'':2}{', '.join(f'{k} {v}' for k, v in sorted(calls.items()))}")


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
