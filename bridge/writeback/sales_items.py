"""Sale items to line items: each item's Product2 (by ProductCode, else Name) and its standard
price book entry, resolved in batches before anything is written (a missing product fails the
push with the item it could not find), then one OpportunityLineItem per item."""

from __future__ import annotations

from collections import defaultdict

from bridge.config import OrgConfig
from bridge.writeback import sales_lookups
from bridge.writeback.client import Writer
from bridge.writeback.sales_records import Event, SharedWrite, permanent, write


def resolve_products(writer: Writer, cfg: OrgConfig, batch: list[Event]) -> None:
    sales = [
        e
        for e in batch
        if e.kind == "sale"
        and e.body.get("items")
        and not all(e.result.get("line_items") or [None])
    ]
    if not sales:
        return
    codes = sorted(
        {i["product_code"] for e in sales for i in e.body["items"] if i.get("product_code")}
    )
    names = sorted(
        {
            i["product_name"]
            for e in sales
            for i in e.body["items"]
            if i.get("product_name") and not i.get("product_code")
        }
    )
    found, book = sales_lookups.products(writer, codes, names)
    by_code = defaultdict(list)
    by_name = defaultdict(list)
    for p in found:
        by_code[str(p.get("ProductCode") or "").lower()].append(p)
        by_name[str(p.get("Name") or "").lower()].append(p)
    chosen: dict[int, list[str]] = {}  # push id -> product id per item
    for event in sales:
        ids, missing = [], []
        for n, item in enumerate(event.body["items"], 1):
            code = item.get("product_code")
            pool = by_code[code.lower()] if code else by_name[str(item["product_name"]).lower()]
            what = f"ProductCode {code!r}" if code else f"Name {item['product_name']!r}"
            if len(pool) == 1:
                ids.append(str(pool[0]["Id"]))
            else:
                missing.append(f"item {n}: {'no' if not pool else len(pool)} Product2 with {what}")
        if missing or book is None:
            why = "; ".join(missing) or "the org has no standard price book"
            event.fail(
                permanent(
                    event.item.push_id,
                    "product_not_found",
                    f"the sale's products cannot be resolved: {why}",
                    ["items"],
                )
            )
        else:
            chosen[event.item.push_id] = ids
    wanted = sorted({p for ids in chosen.values() for p in ids})
    if not wanted or book is None:
        return
    entries = {str(e["Product2Id"]): e for e in sales_lookups.price_entries(writer, book, wanted)}
    creates: dict[str, SharedWrite] = {}
    for event in sales:
        for n, (product, item) in enumerate(
            zip(chosen.get(event.item.push_id, []), event.body["items"], strict=False), 1
        ):
            entry = entries.get(product)
            if entry is not None and entry.get("IsActive") is False:
                event.fail(
                    permanent(
                        event.item.push_id,
                        "price_entry_inactive",
                        f"item {n}: the standard price of product {product} is inactive",
                        ["items"],
                    )
                )
            elif entry is None and not cfg.writeback.sales.create_price_entries:
                event.fail(
                    permanent(
                        event.item.push_id,
                        "price_entry_missing",
                        f"item {n}: product {product} has no standard price; add "
                        "one, or set writeback.sales.create_price_entries",
                        ["items"],
                    )
                )
            elif entry is None:
                w = creates.setdefault(
                    product,
                    SharedWrite(
                        [],
                        {
                            "Pricebook2Id": book,
                            "Product2Id": product,
                            "UnitPrice": item["unit_price"],
                            "IsActive": True,
                        },
                    ),
                )
                w.events.append(event)
    write(writer, "PricebookEntry", list(creates.values()))
    for product, w in creates.items():
        if w.ok:
            entries[product] = {"Id": w.saved_id, "Product2Id": product}
    for event in sales:
        if event.live() and event.item.push_id in chosen:
            event.result["products"] = [
                {"product_id": p, "price_entry_id": str(entries[p]["Id"])}
                for p in chosen[event.item.push_id]
            ]


LineItem = tuple[Event, int, SharedWrite]  # the sale, the item's index, its write


def plan_line_items(batch: list[Event]) -> list[LineItem]:
    """One OpportunityLineItem per sale item not saved yet (a resend after a failure writes
    only the others); sent with the contact roles (`sales`), then kept by `keep_line_items`."""
    todo = [
        e
        for e in batch
        if e.kind == "sale"
        and e.body.get("items")
        and not all(e.result.get("line_items") or [None])
    ]
    writes: list[LineItem] = []
    for event in todo:
        opportunity = event.result["opportunity"]["record_id"]
        saved = event.result.setdefault("line_items", [None] * len(event.body["items"]))
        for n, (item, product) in enumerate(
            zip(event.body["items"], event.result["products"], strict=True)
        ):
            if saved[n]:
                continue
            fields = {
                "OpportunityId": opportunity,
                "PricebookEntryId": product["price_entry_id"],
                "Quantity": float(item["quantity"]),
                "UnitPrice": float(item["unit_price"]),
            }
            writes.append((event, n, SharedWrite([event], fields)))
    return writes


def keep_line_items(writes: list[LineItem]) -> None:
    for event, n, w in writes:
        if w.ok:
            event.result["line_items"][n] = w.saved_id
