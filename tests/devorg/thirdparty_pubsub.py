"""Run pysfpubsub, unmodified, against the local org (in its own process: its generated
stubs register the same proto symbols as the bridge's, which one process cannot hold twice).

Usage: python thirdparty_pubsub.py <devorg.json> <pubsub port> <access token> <topic> <n>
Prints one JSON line per decoded event, then "done". The client trusts the certifi bundle,
so certifi is pointed at the org's CA first, as a company with its own CA would install it;
the client's SOAP login is not used (the local org has no SOAP API): its metadata is set from
an OAuth session, which is what the login would produce.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import certifi

info = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
certifi.where = lambda: info["ca_path"]  # before the client reads its CA bundle

import pysfpubsub  # noqa: E402

port, token, topic, wanted = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
client = pysfpubsub.Client(
    url=info["instance_url"], username="", password="", grpc_host="127.0.0.1", grpc_port=port
)
client.metadata = (
    ("accesstoken", token),
    ("instanceurl", info["instance_url"]),
    ("tenantid", info["org_id"]),
)
topic_info = client.get_topic(topic)
print(json.dumps({"topic": topic_info.topic_name, "schema_id": topic_info.schema_id}), flush=True)
seen = []


def callback(response: object, c: pysfpubsub.Client) -> None:
    for event in response.events:  # type: ignore[attr-defined]
        schema = c.get_schema_json(event.event.schema_id)
        decoded = c.decode(schema, event.event.payload)
        print(json.dumps(decoded, default=str), flush=True)
        seen.append(decoded)
    if len(seen) >= wanted:
        print("done", flush=True)
        raise SystemExit(0)
    c.release_subscription_semaphore()


client.subscribe(topic, "EARLIEST", b"", 5, callback)
