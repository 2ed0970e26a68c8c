"""The local org's Pub/Sub API, through real gRPC over TLS: the bridge's stubs and a
third-party client (pysfpubsub) unmodified."""

from __future__ import annotations

import io
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import grpc
import pytest

from bridge.devorg.testing import DevOrg
from bridge.salesforce.pubsub_api import pubsub_api_pb2 as pb2
from bridge.salesforce.pubsub_api import pubsub_api_pb2_grpc as pb2_grpc

LEADS = "/data/LeadChangeEvent"


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOrg]:
    with DevOrg(tmp_path_factory.mktemp("devorg-pubsub"), pubsub=True) as running:
        yield running


@pytest.fixture
def clean(org: DevOrg) -> Iterator[DevOrg]:
    org.control("reset")
    yield org
    org.control("reset")


class Client:
    def __init__(self, org: DevOrg, user: str = "integration") -> None:
        creds = grpc.ssl_channel_credentials(Path(org.ca_path).read_bytes())
        self.channel = grpc.secure_channel(f"127.0.0.1:{org.pubsub_port}", creds)
        self.stub = pb2_grpc.PubSubStub(self.channel)
        tok = org.token(user)
        self.metadata = (
            ("accesstoken", tok["access_token"]),
            ("instanceurl", tok["instance_url"]),
            ("tenantid", org.info["org_id"]),
        )

    def schema(self, schema_id: str) -> Any:
        info = self.stub.GetSchema(pb2.SchemaRequest(schema_id=schema_id), metadata=self.metadata)
        return fastavro.parse_schema(json.loads(info.schema_json))

    def decode(self, event: Any) -> dict[str, Any]:
        schema = self.schema(event.event.schema_id)
        return dict(fastavro.schemaless_reader(io.BytesIO(event.event.payload), schema, None))

    def subscribe(self, topic: str, preset: int, replay_id: bytes = b"", first: int = 10) -> Any:
        more: queue.Queue[int] = queue.Queue()

        def requests() -> Iterator[Any]:
            yield pb2.FetchRequest(
                topic_name=topic, replay_preset=preset, replay_id=replay_id, num_requested=first
            )
            while True:
                n = more.get()
                if n < 0:
                    return
                yield pb2.FetchRequest(num_requested=n)

        stream = self.stub.Subscribe(requests(), metadata=self.metadata, timeout=20)
        return stream, more


def lead(org: DevOrg, **fields: Any) -> str:
    return str(
        org.sf("sales").Lead.create({"LastName": "Lovelace", "Company": "Acme", **fields})["id"]
    )


def test_topic_schema_and_change_events_with_bitmaps(clean: DevOrg) -> None:
    client = Client(clean)
    info = client.stub.GetTopic(pb2.TopicRequest(topic_name=LEADS), metadata=client.metadata)
    assert info.can_subscribe and not info.can_publish and info.tenant_guid == clean.info["org_id"]
    schema_json = json.loads(
        client.stub.GetSchema(
            pb2.SchemaRequest(schema_id=info.schema_id), metadata=client.metadata
        ).schema_json
    )
    names = [f["name"] for f in schema_json["fields"]]
    assert names[0] == "ChangeEventHeader" and "Email" in names and "Name" in names
    lead_id = lead(clean, Email="ada@example.com")
    clean.sf("sales").Lead.update(lead_id, {"Email": None, "FirstName": "Ada"})
    stream, _more = client.subscribe(LEADS, pb2.ReplayPreset.EARLIEST)
    events = [client.decode(e) for e in next(stream).events]
    created, updated = events[0], events[1]
    header = created["ChangeEventHeader"]
    assert header["changeType"] == "CREATE" and header["recordIds"] == [lead_id]
    assert created["Email"] == "ada@example.com" and created["Name"]["LastName"] == "Lovelace"
    up = updated["ChangeEventHeader"]
    email_bit = 1 << names.index("Email")
    name_index = names.index("Name")
    assert int(up["nulledFields"][0], 16) == email_bit
    assert int(up["changedFields"][0], 16) & email_bit
    nested = [p for p in up["changedFields"][1:] if p.startswith(f"{name_index}-")]
    name_parts = [f["name"] for f in schema_json["fields"][name_index]["type"][1]["fields"]]
    assert nested == [f"{name_index}-0x{1 << name_parts.index('FirstName'):X}"]
    assert updated["Name"]["FirstName"] == "Ada" and updated["Email"] is None
    stream.cancel()


def test_the_change_events_of_one_transaction_share_it(clean: DevOrg) -> None:
    """A collection's changes, and a Bulk API chunk's, are one transaction each:
    transactionKey and commitNumber shared, sequenceNumber 1, 2, …, and commitTimestamp the
    record's LastModifiedDate (CDC guide, "Change Events for Lead Conversion")."""
    sf = clean.sf("sales")
    records = [
        {"attributes": {"type": "Lead"}, "LastName": f"T{i}", "Company": "T"} for i in range(20)
    ]
    sf.restful("composite/sobjects", method="POST", json={"records": records})
    sf.bulk2.Lead.insert(records=[{"LastName": f"Bulk{i}", "Company": "B"} for i in range(3)])
    client = Client(clean)
    stream, _more = client.subscribe(LEADS, pb2.ReplayPreset.EARLIEST, first=100)
    events = [client.decode(e) for e in next(stream).events]
    while len(events) < 23:
        events += [client.decode(e) for e in next(stream).events]
    headers = [e["ChangeEventHeader"] for e in events]
    for transaction in (headers[:20], headers[20:]):
        assert len({(h["transactionKey"], h["commitNumber"]) for h in transaction}) == 1
        assert [h["sequenceNumber"] for h in transaction] == list(range(1, len(transaction) + 1))
    assert headers[20]["transactionKey"] != headers[0]["transactionKey"]
    assert all(e["LastModifiedDate"] == e["ChangeEventHeader"]["commitTimestamp"] for e in events)
    stream.cancel()


def test_flow_control_sends_no_more_than_requested(clean: DevOrg) -> None:
    for i in range(5):
        lead(clean, Email=f"l{i}@example.com")
    client = Client(clean)
    stream, more = client.subscribe(LEADS, pb2.ReplayPreset.EARLIEST, first=2)
    first = next(stream)
    assert len(first.events) == 2 and first.pending_num_requested == 0
    more.put(10)
    second = next(stream)
    assert len(second.events) == 3
    assert second.events[0].replay_id > first.events[-1].replay_id
    # CUSTOM starts after the replay id given
    stream.cancel()
    after, _ = client.subscribe(LEADS, pb2.ReplayPreset.CUSTOM, first.events[-1].replay_id)
    assert [e.replay_id for e in next(after).events] == [e.replay_id for e in second.events]
    after.cancel()


def test_latest_gets_only_new_events(clean: DevOrg) -> None:
    ids = [lead(clean) for _ in range(3)]
    client = Client(clean)
    stream, _ = client.subscribe(LEADS, pb2.ReplayPreset.LATEST)
    threading.Timer(0.5, lambda: clean.sf("sales").Lead.delete(ids[0])).start()
    event = client.decode(next(stream).events[0])
    assert event["ChangeEventHeader"]["changeType"] == "DELETE"
    assert event["ChangeEventHeader"]["recordIds"] == [ids[0]]
    stream.cancel()


def test_replay_id_past_retention_is_the_documented_error(clean: DevOrg) -> None:
    lead(clean)
    client = Client(clean)
    stream, _ = client.subscribe(LEADS, pb2.ReplayPreset.EARLIEST)
    old = next(stream).events[0].replay_id
    stream.cancel()
    clean.control("clock", {"advance_seconds": 73 * 3600})
    client = Client(clean)  # the old session has expired with the clock
    stream, _ = client.subscribe(LEADS, pb2.ReplayPreset.CUSTOM, old)
    with pytest.raises(grpc.RpcError) as caught:
        next(stream)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(caught.value.trailing_metadata() or ())
    assert (
        trailers["error-code"]
        == "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
    )


def test_bad_credentials_are_unauthenticated(clean: DevOrg) -> None:
    client = Client(clean)
    for metadata in (
        (("accesstoken", "nope"), *client.metadata[1:]),
        (*client.metadata[:2], ("tenantid", "00D000000000000AAA")),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            client.stub.GetTopic(pb2.TopicRequest(topic_name=LEADS), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as missing:
        client.stub.GetTopic(pb2.TopicRequest(topic_name="/data/Nope"), metadata=client.metadata)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_publish_a_platform_event(clean: DevOrg) -> None:
    client = Client(clean)
    topic = "/event/Bridge_Notice__e"
    info = client.stub.GetTopic(pb2.TopicRequest(topic_name=topic), metadata=client.metadata)
    assert info.can_publish
    schema = client.schema(info.schema_id)
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf,
        schema,
        {"CreatedDate": 1, "CreatedById": "005", "Message__c": "hi", "Record_Id__c": None},
    )
    stream, _ = client.subscribe(topic, pb2.ReplayPreset.EARLIEST)
    published = client.stub.Publish(
        pb2.PublishRequest(
            topic_name=topic,
            events=[
                pb2.ProducerEvent(id="e1", schema_id=info.schema_id, payload=buf.getvalue()),
                pb2.ProducerEvent(id="e2", schema_id="wrong", payload=b"x"),
            ],
        ),
        metadata=client.metadata,
    )
    ok, bad = published.results
    assert ok.replay_id and not ok.error.msg and ok.correlation_key == "e1"
    assert bad.error.msg and not bad.replay_id
    event = next(stream).events[0]
    assert event.replay_id == ok.replay_id and client.decode(event)["Message__c"] == "hi"
    stream.cancel()


def test_bulk_api_changes_reach_change_data_capture(clean: DevOrg) -> None:
    sf = clean.sf("sales")
    sf.bulk2.Lead.insert(records=[{"LastName": f"Bulk{i}", "Company": "B"} for i in range(3)])
    client = Client(clean)
    stream, _ = client.subscribe(LEADS, pb2.ReplayPreset.EARLIEST)
    events = [client.decode(e) for e in next(stream).events]
    assert len(events) == 3
    assert all("bulkapi" in e["ChangeEventHeader"]["changeOrigin"] for e in events)
    ids = [e["ChangeEventHeader"]["recordIds"][0] for e in events]
    sf.bulk2.Lead.delete(records=[{"Id": i} for i in ids])
    deleted = [client.decode(e) for e in next(stream).events]
    assert len(deleted) == 1  # one transaction's deletes: one event naming every record
    assert deleted[0]["ChangeEventHeader"]["changeType"] == "DELETE"
    assert sorted(deleted[0]["ChangeEventHeader"]["recordIds"]) == sorted(ids)
    stream.cancel()


def test_a_third_party_client_subscribes_unmodified(clean: DevOrg) -> None:
    lead(clean, Email="third@example.com")
    lead(clean, Email="party@example.com")
    token = clean.token("integration")["access_token"]
    script = Path(__file__).with_name("thirdparty_pubsub.py")
    out = subprocess.run(
        [sys.executable, str(script), str(clean.data_dir / "devorg.json"),
         str(clean.pubsub_port), token, LEADS, "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert json.loads(lines[0])["topic"] == LEADS and lines[-1] == "done"
    emails = [json.loads(line)["Email"] for line in lines[1:-1]]
    assert emails == ["third@example.com", "party@example.com"]
