"""Small builders shared by the inbound tests."""

from __future__ import annotations

from typing import Any

from bridge.config import OrgConfig


def org_config(**overrides: Any) -> OrgConfig:
    data: dict[str, Any] = {
        "programs": [{"key": "main", "name": "Main"}],
        "receiver": {
            "program": "main",
            "referral_fields": {"company": "Account.Name", "stage": "Opportunity.StageName"},
            "status_rules": [
                {
                    "status": "qualified",
                    "object": "Lead",
                    "field": "Status",
                    "op": "equals",
                    "value": "Qualified",
                },
            ],
        },
    }
    data.update(overrides)
    return OrgConfig.model_validate(data)


def pushtopic_message(
    channel: str,
    replay_id: int,
    record: dict[str, Any],
    change_type: str = "updated",
    created: str = "2026-01-05T10:00:00.000Z",
) -> dict[str, Any]:
    return {
        "channel": channel,
        "data": {
            "event": {"createdDate": created, "replayId": replay_id, "type": change_type},
            "sobject": record,
        },
    }
