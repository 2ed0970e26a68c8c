"""API calls of sales to Salesforce: the bridge's batched path beside one call per record.

Starts `sfbridge devorg`, connects as the integration user (JWT bearer flow), saves N sales
(each a new business with a contact and K items) in a fresh SQLite store, sends them with the
sender (the path the `outbound` job runs) and counts the org's API calls (its own stats). The
baseline does the same work one record at a time on a fresh org state, as an integration
without batching would (a query per lookup, a create per record), and is counted the same way.

With `--locations L` every sale also lists L locations and the multi-site sync is on
(`writeback.sales.sites: {}`): the bridge upserts the organizations and sites in collections,
the baseline one upsert per record.

    scripts/bench_sales [--sales 100] [--items 3] [--locations 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchorg import bench_org  # noqa: E402
from simple_salesforce import format_soql  # noqa: E402

from bridge.devorg.testing import DevOrg  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.store.models import OrgConnection, Program, Referral  # noqa: E402
from bridge.writeback import events  # noqa: E402
from bridge.writeback.client import OrgWriter  # noqa: E402
from bridge.writeback.sender import send  # noqa: E402


def integration_calls(devorg: DevOrg) -> int:
    stats = devorg.control("stats", method="GET")
    return int(stats["api_calls"]["by_user"].get(devorg.user("integration")["username"], 0))


def sale_body(n: int, items: int, locations: int = 0) -> dict[str, Any]:
    return {
        "locations": [f"Site {k} of business {n}" for k in range(locations)],
        "id": f"bench-sale-{n}",
        "business_name": f"Bench Business {n}",
        "phone": f"(415) 555-{n % 10000:04d}",
        "city": "Oakland",
        "closed_at": "2026-11-20T10:00:00+00:00",
        "items": [
            {"product_code": f"P{k}", "quantity": "1", "unit_price": "10.00"} for k in range(items)
        ],
    }


def one_at_a_time(sf: Any, n: int, body: dict[str, Any], book: str) -> None:
    """The same sale as a naive integration writes it: every lookup and record its own call."""
    q = lambda soql, *a: sf.query(format_soql(soql, *a))["records"]  # noqa: E731
    found = q("SELECT Id FROM Account WHERE Phone = {}", body["phone"])
    found = found or q("SELECT Id FROM Account WHERE Name = {}", body["business_name"])
    account = (
        found[0]["Id"]
        if found
        else sf.Account.create({"Name": body["business_name"], "Phone": body["phone"]})["id"]
    )
    contacts = q("SELECT Id FROM Contact WHERE AccountId = {} AND LastName = {}", account, "Bench")
    contact = (
        contacts[0]["Id"]
        if contacts
        else sf.Contact.create({"AccountId": account, "LastName": "Bench"})["id"]
    )
    opps = q("SELECT Id FROM Opportunity WHERE AccountId = {} AND IsClosed = false", account)
    fields = {"StageName": "Closed Won", "CloseDate": body["closed_at"][:10]}
    if opps:
        opp = opps[0]["Id"]
        sf.Opportunity.update(opp, fields)
    else:
        opp = sf.Opportunity.create(
            {**fields, "Name": body["business_name"], "AccountId": account}
        )["id"]
    sf.OpportunityContactRole.create({"OpportunityId": opp, "ContactId": contact})
    for item in body["items"]:
        [product] = q("SELECT Id FROM Product2 WHERE ProductCode = {}", item["product_code"])
        [entry] = q(
            "SELECT Id FROM PricebookEntry WHERE Pricebook2Id = {} AND Product2Id = {}",
            book,
            product["Id"],
        )
        sf.OpportunityLineItem.create(
            {"OpportunityId": opp, "PricebookEntryId": entry["Id"], "Quantity": 1, "UnitPrice": 10}
        )
    if body["locations"]:
        sf.SFBridge_Organization__c.upsert(
            f"Organization_Key__c/{account}", {"Name": body["business_name"], "Account__c": account}
        )
        organization = q(
            "SELECT Id FROM SFBridge_Organization__c WHERE Organization_Key__c = {}", account
        )[0]["Id"]
        for location in body["locations"]:
            sf.SFBridge_Site__c.upsert(
                f"Site_Key__c/{account}:{location.lower()}",
                {"Name": location, "Account__c": account, "Organization__c": organization},
            )


def seed_products(devorg: DevOrg, items: int) -> str:
    sales = devorg.sf("sales")
    book = sales.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    for k in range(items):
        product = sales.Product2.create({"Name": f"Product {k}", "ProductCode": f"P{k}"})["id"]
        sales.PricebookEntry.create(
            {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 10, "IsActive": True}
        )
    return str(book)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=100)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--locations", type=int, default=0, help="locations per sale")
    args = parser.parse_args()

    with DevOrg() as devorg, tempfile.TemporaryDirectory() as tmp:
        info = devorg.info
        config, org = bench_org(info, writeback={"sales": {"sites": {}}} if args.locations else {})
        book = seed_products(devorg, args.items)
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        store.upgrade()
        with store.session() as s:
            conn = OrgConnection(name="bench", login_url=info["login_url"], auth_method="jwt")
            program = Program(key="bench", name="Bench")
            s.add_all([conn, program])
            s.flush()
            ids = []
            for n in range(args.sales):
                referral = Referral(
                    public_id=f"ref-bench-{n}",
                    program_id=program.id,
                    last_name="Bench",
                    phone=f"(510) 555-{n % 10000:04d}",
                )
                s.add(referral)
                s.flush()
                body = sale_body(n, args.items, args.locations)
                at = datetime.fromisoformat(body["closed_at"]).astimezone(UTC)
                ids.append(events.record(s, "sale", conn, referral, body, at)[1].id)

        before = integration_calls(devorg)
        started = time.perf_counter()
        report = send(store, OrgWriter.for_org(org), config, ids)
        elapsed = time.perf_counter() - started
        calls = integration_calls(devorg) - before
        print(
            f"bridge     {args.sales:>5} sales x {args.items} items, {args.locations} locations  "
            f"sent={len(report.sent):<5} "
            f"failed={len(report.failed):<4} {elapsed:7.2f} s  API calls={calls}"
        )

        devorg.control("reset")
        book = seed_products(devorg, args.items)
        sf = devorg.sf("integration")
        before = integration_calls(devorg)
        started = time.perf_counter()
        for n in range(args.sales):
            one_at_a_time(sf, n, sale_body(n, args.items, args.locations), book)
        elapsed = time.perf_counter() - started
        baseline = integration_calls(devorg) - before
        print(
            f"one by one {args.sales:>5} sales x {args.items} items, {args.locations} locations  "
            f"{elapsed:7.2f} s  API calls={baseline}"
        )
        per = 100 / max(args.sales, 1)
        print(f"calls per 100 sales: bridge {calls * per:.0f}, one by one {baseline * per:.0f}")
        store.dispose()


if __name__ == "__main__":
    main()
