"""The org the outbound benchmarks write to: the local org's integration user, by JWT (for
`scripts/bench_drain.py`, `bench_routing.py`, `bench_sales.py`)."""

from __future__ import annotations

from typing import Any

from bridge.config import BridgeConfig, OrgConfig
from bridge.orgs import jwt_credentials, read_private_key
from bridge.salesforce.connection import connect


def bench_org(info: dict[str, Any], **settings: Any) -> tuple[OrgConfig, Any]:
    """The config of the org `bench` (one program `bench`, the receiver on it, and
    `settings`) and a connection to the local org `info` describes (`DevOrg.info`)."""
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
                    **settings,
                }
            }
        }
    ).orgs["bench"]
    key = read_private_key(info["jwt_private_key_path"])
    return config, connect(jwt_credentials("bench", config, key))
