"""The keys the multi-site sync upserts sites by."""

from __future__ import annotations

import pytest

from bridge.writeback.sales_sites import KEY_LENGTH, site_key

ACCOUNT = "001000000000001AAA"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("12 Main St", "12 main st", True),
        ("Pier 39", "  pier\t39 ", True),
        ("12 Main St", "12 Main Street", False),
        ("Straße 1", "STRASSE 1", True),  # casefold, as the key field compares case-blind
    ],
)
def test_a_location_is_keyed_case_and_space_blind(a: str, b: str, same: bool) -> None:
    assert (site_key(ACCOUNT, a) == site_key(ACCOUNT, b)) == same


def test_the_key_names_the_account() -> None:
    assert site_key(ACCOUNT, "Pier 39") == f"{ACCOUNT}:pier 39"
    assert site_key("001000000000002AAA", "Pier 39") != site_key(ACCOUNT, "Pier 39")


def test_a_long_location_is_keyed_by_its_digest() -> None:
    long = "Unit 4, " + "x" * 250
    key = site_key(ACCOUNT, long)
    assert len(key) <= KEY_LENGTH and key.startswith(f"{ACCOUNT}:sha256:")
    assert key == site_key(ACCOUNT, long.upper())
    assert key != site_key(ACCOUNT, long + "y")
