"""The user mapping resolves reps to active Salesforce users in one batched query."""

from __future__ import annotations

from typing import Any

from bridge.config import UserRef
from bridge.writeback import owners


class Users:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self.queries = rows, []  # type: list[dict[str, Any]], list[str]

    def query(self, soql: str) -> list[dict[str, Any]]:
        self.queries.append(soql)
        return self.rows

    def collection(
        self, method: str, path: str, records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        raise AssertionError("no writes")


def test_reps_resolve_by_id_or_email_to_active_users_only() -> None:
    org = Users(
        [
            {"Id": "005000000000001AAA", "Email": "ann@example.com", "IsActive": True},
            {"Id": "005000000000002AAA", "Email": "old@example.com", "IsActive": False},
            {"Id": "005000000000003AAA", "Email": "twin@example.com", "IsActive": True},
            {"Id": "005000000000004AAA", "Email": "twin@example.com", "IsActive": True},
        ]
    )
    got = owners.resolve(
        org,
        {
            "ann": UserRef(email="Ann@Example.com"),
            "by-id": UserRef(user_id="005000000000001"),  # 15 characters match 18
            "old": UserRef(email="old@example.com"),
            "twin": UserRef(email="twin@example.com"),
            "none": UserRef(user_id="005000000000009AAA"),
        },
    )
    assert [org.queries[0].count(" IN ")] == [2] and len(org.queries) == 1
    assert got["ann"].user_id == got["by-id"].user_id == "005000000000001AAA"
    assert (got["old"].user_id, got["old"].reason) == (
        None,
        "the user with the email old@example.com is inactive",
    )
    assert got["twin"].reason == "2 active users have the email twin@example.com"
    assert got["none"].reason == "no user 005000000000009AAA in the org"
