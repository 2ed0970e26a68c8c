"""Writeback throughput and API economy against the local org.

Starts `sfbridge devorg`, connects as the integration user (JWT bearer flow), saves N referral
pushes and N activity pushes in a fresh SQLite store, sends them with the bulk sender and prints
the wall time, pushes per second and Salesforce API calls used (from the org's own stats), next
to the calls a one-record-at-a-time writer would have needed.

    .venv/bin/python scripts/bench_writeback.py [--referrals 1000] [--activities 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from bridge.config import BridgeConfig  # noqa: E402
from bridge.devorg.testing import DevOrg  # noqa: E402
from bridge.orgs import jwt_credentials, read_private_key  # noqa: E402
from bridge.salesforce.connection import connect  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.store.models import OrgConnection, Program, Referral  # noqa: E402
from bridge.writeback import queue_activity, queue_referral_add  # noqa: E402
from bridge.writeback.client import OrgWriter  # noqa: E402
from bridge.writeback.sender import send  # noqa: E402


def integration_calls(devorg: DevOrg) -> int:
    stats = devorg.control("stats", method="GET")
    by_user = stats["api_calls"]["by_user"]
    return int(by_user.get(devorg.user("integration")["username"], 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=1000)
    parser.add_argument("--activities", type=int, default=1000)
    args = parser.parse_args()

    with DevOrg() as devorg, tempfile.TemporaryDirectory() as tmp:
        info = devorg.info
        config = BridgeConfig.model_validate(
            {
                "orgs": {
                    "bench": {
                        "login_url": info["login_url"],
                        "client_id": info["client_id"],
                        "username": info["users"]["integration"]["username"],
                        "ca_bundle": info["ca_path"],
                        "programs": [{"key": "bench", "name": "Bench"}],
                        "receiver": {"program": "bench"},
                    }
                }
            }
        ).orgs["bench"]
        key = read_private_key(info["jwt_private_key_path"])
        org = connect(jwt_credentials("bench", config, key))
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.upgrade()
        with store.session() as s:
            conn = OrgConnection(name="bench", login_url=info["login_url"], auth_method="jwt")
            program = Program(key="bench", name="Bench")
            s.add_all([conn, program])
            s.flush()
            for n in range(args.referrals):
                s.add(
                    Referral(
                        public_id=f"ref_bench_{n}",
                        program_id=program.id,
                        first_name="Bench",
                        last_name=f"Person {n}",
                        email=f"person{n}@bench.example",
                    )
                )
            s.flush()
            referral_pushes = [
                queue_referral_add(s, conn, config, r).id
                for r in s.scalars(select(Referral).order_by(Referral.id))
            ]
            activity_pushes = [
                queue_activity(
                    s,
                    conn,
                    config,
                    {
                        "id": f"act-bench-{n}",
                        "kind": "email",
                        "email": f"person{n % max(args.referrals, 1)}@bench.example",
                        "subject": f"Hello {n}",
                        "occurred_at": "2026-11-20T10:00:00Z",
                    },
                ).id
                for n in range(args.activities)
            ]

        writer = OrgWriter.for_org(org)
        for label, ids, naive_calls_per in (
            ("referrals", referral_pushes, 3),  # lookup Lead + lookup Contact + upsert
            ("activities", activity_pushes, 3),  # lookup Contact + lookup Lead + upsert
        ):
            if not ids:
                continue
            before = integration_calls(devorg)
            started = time.perf_counter()
            report = send(store, writer, config, ids)
            elapsed = time.perf_counter() - started
            calls = integration_calls(devorg) - before
            print(
                f"{label:<10} {len(ids):>6} pushes  sent={len(report.sent):<6} "
                f"failed={len(report.failed):<4} {elapsed:7.2f} s  "
                f"{len(ids) / elapsed:8.1f} pushes/s  API calls={calls:<4} "
                f"(one at a time: {naive_calls_per * len(ids)})"
            )
        store.dispose()


if __name__ == "__main__":
    main()
