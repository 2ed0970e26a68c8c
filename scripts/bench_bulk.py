"""Writes through Bulk API 2.0 beside sObject Collections: API calls and time, in one run.

Starts `sfbridge devorg`, connects as the integration user (JWT bearer flow) and upserts the same
number of Leads by Referral_ID__c twice: with the Bulk API 2.0 client (`BulkWriter`) and with
sObject Collections of 200 (`OrgWriter.collection`, what the sender uses today). API calls are
the org's own count for the integration user. `--latency-ms` adds that much to every API call
(a real org is 50-200 ms away), which shows what the calls cost in time.

    scripts/bench_bulk [--writes 10000] [--latency-ms 0]

`compare(org, devorg, writes)` returns the figures, for other benchmarks to print.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.devorg.testing import DevOrg  # noqa: E402
from bridge.salesforce.bulk import BulkWriter, PollPolicy  # noqa: E402
from bridge.salesforce.connection import OrgCredentials, SalesforceOrg, connect  # noqa: E402
from bridge.writeback.client import COLLECTION_LIMIT, OrgWriter, chunks  # noqa: E402


def integration_calls(devorg: DevOrg) -> int:
    stats = devorg.control("stats", method="GET")["api_calls"]["by_user"]
    return int(stats.get(devorg.user("integration")["username"], 0))


def leads(prefix: str, writes: int) -> list[dict[str, Any]]:
    return [
        {
            "Referral_ID__c": f"{prefix}_{n}",
            "FirstName": "Bench",
            "LastName": f"Person {n}",
            "Company": "Bench Inc",
            "Email": f"{prefix}{n}@bench.example",
        }
        for n in range(writes)
    ]


def _measure(devorg: DevOrg, run: Any) -> dict[str, float]:
    before = integration_calls(devorg)
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    return {
        "calls": integration_calls(devorg) - before,
        "seconds": elapsed,
        "ok": sum(1 for r in results if r.get("success")),
    }


def compare(org: SalesforceOrg, devorg: DevOrg, writes: int = 10_000) -> dict[str, Any]:
    """Upsert `writes` Leads through Bulk API 2.0 and through collections; the figures of each."""
    bulk_writer = BulkWriter(org, poll=PollPolicy(first=0.5, factor=1.5, longest=5, timeout=900))
    bulk = _measure(
        devorg,
        lambda: bulk_writer.write(
            "Lead", "upsert", leads("bulk", writes), external_id_field="Referral_ID__c"
        ),
    )
    writer = OrgWriter.for_org(org)

    def by_collections() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in chunks(leads("coll", writes), COLLECTION_LIMIT):
            records = [{"attributes": {"type": "Lead"}, **r} for r in part]
            out += writer.collection("PATCH", "composite/sobjects/Lead/Referral_ID__c", records)
        return out

    collections = _measure(devorg, by_collections)
    return {"writes": writes, "bulk": bulk, "collections": collections}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    with DevOrg() as devorg:
        info = devorg.info
        org = connect(
            OrgCredentials(
                login_url=info["login_url"],
                client_id=info["client_id"],
                username=info["users"]["integration"]["username"],
                private_key_pem=Path(info["jwt_private_key_path"]).read_text(),
                ca_bundle=info["ca_path"],
                api_version=info["api_version"],
            )
        )
        if args.latency_ms:
            devorg.control("faults", {"kind": "latency", "latency_ms": args.latency_ms})
        figures = compare(org, devorg, args.writes)
        n = figures["writes"]
        print(f"{n} Lead upserts by Referral_ID__c, latency {args.latency_ms} ms per call")
        for label, key in (("Bulk API 2.0", "bulk"), ("sObject Collections (baseline)",
                                                      "collections")):  # fmt: skip
            f = figures[key]
            per_10k = f["calls"] * 10_000 / n
            print(
                f"  {label:<31} API calls={f['calls']:<5.0f} per 10,000 writes={per_10k:<7.1f} "
                f"{f['seconds']:7.2f} s  {n / f['seconds']:8.0f} writes/s  ok={f['ok']:.0f}"
            )
        org.close()


if __name__ == "__main__":
    main()
