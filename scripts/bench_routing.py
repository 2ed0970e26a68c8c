"""Lead routing's API economy against the local org: calls per 1,000 routed referrals.

Starts `sfbridge devorg`, maps a rep by email, creates the routing campaign and an Account
matched by an ownership rule, routes N qualifying referrals (half owned by the meeting owner,
half by the account rule), sends them with the bulk sender and prints the Salesforce API calls
used (from the org's own stats): lookups, upserts, the user mapping, the Account lookup for
the rules and the CampaignMember collections — next to what a record-at-a-time router needs.

    .venv/bin/python scripts/bench_routing.py [--referrals 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchorg import bench_org  # noqa: E402
from simple_salesforce import format_soql  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bridge.devorg.testing import DevOrg  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.store.models import OrgConnection, Program, Push, Referral  # noqa: E402
from bridge.writeback import gate  # noqa: E402
from bridge.writeback.client import OrgWriter  # noqa: E402
from bridge.writeback.sender import send  # noqa: E402


def integration_calls(devorg: DevOrg) -> int:
    stats = devorg.control("stats", method="GET")
    return int(stats["api_calls"]["by_user"].get(devorg.user("integration")["username"], 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=1000)
    args = parser.parse_args()

    with DevOrg() as devorg, tempfile.TemporaryDirectory() as tmp:
        info = devorg.info
        sales = devorg.sf("sales")
        sales_id = devorg.user("sales")["id"]
        email = sales.query(format_soql("SELECT Email FROM User WHERE Id = {}", sales_id))[
            "records"
        ][0]["Email"]
        sales.Campaign.create({"Name": "Bench campaign", "IsActive": True})
        sales.Account.create({"Name": "Big", "Website": "big.example", "NumberOfEmployees": 5000})
        config, org = bench_org(
            info,
            users={"sally": {"email": email}},
            routing={
                "minimum_score": "two",
                "campaign": {"name": "Bench campaign"},
                "lead_owner": {},
                "account_rules": [
                    {
                        "name": "enterprise",
                        "segment": [{"field": "NumberOfEmployees", "op": "gte", "value": 1000}],
                    }
                ],
            },
        )
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.upgrade()
        with store.session() as s:
            conn = OrgConnection(name="bench", login_url=info["login_url"], auth_method="jwt")
            s.add(conn)
            s.flush()
            program = Program(key="bench", name="Bench", org_connection_id=conn.id)
            s.add(program)
            s.flush()
            for n in range(args.referrals):
                by_account = n % 2 == 1
                s.add(
                    Referral(
                        public_id=f"ref_route_{n}",
                        program_id=program.id,
                        last_name=f"Person {n}",
                        email=f"p{n}@big.example" if by_account else f"p{n}@gmail.com",
                        score=3,
                        meeting_owner=None if by_account else "sally",
                    )
                )
            s.flush()
            for referral in s.scalars(select(Referral).order_by(Referral.id)):
                gate.route_referral(s, conn, config, referral)
            ids = list(s.scalars(select(Push.id).where(Push.kind == "referral")))

        before = integration_calls(devorg)
        started = time.perf_counter()
        report = send(store, OrgWriter.for_org(org), config, ids)
        elapsed = time.perf_counter() - started
        calls = integration_calls(devorg) - before
        owned = sales.query(format_soql("SELECT COUNT() FROM Lead WHERE OwnerId = {}", sales_id))[
            "totalSize"
        ]
        members = sales.query("SELECT COUNT() FROM CampaignMember")["totalSize"]
        with store.session() as s:
            failed = s.scalar(select(func.count()).where(Push.state == "failed"))
        n = len(ids)
        print(
            f"routed     {n:>6} referrals  sent={len(report.sent) - members:<6} failed={failed:<4}"
            f" owned by the mapped rep={owned:<6} campaign members={members:<6} {elapsed:7.2f} s"
        )
        per_1000 = calls * 1000 / max(n, 1)
        print(
            f"API calls  {calls} ({per_1000:.0f} per 1,000 routed referrals; record at a time: "
            f"{6 * n} — lookups Lead+Contact, user, account, upsert, campaign member)"
        )
        store.dispose()


if __name__ == "__main__":
    main()
