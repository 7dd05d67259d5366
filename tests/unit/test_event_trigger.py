"""The watcher trigger on moto's SQS, driven by Airflow's own SharedStreamManager as the triggerer drives it."""

from __future__ import annotations

import asyncio
import json

import boto3
import pytest
from airflow.triggers.shared_stream import SharedStreamManager
from moto import mock_aws

from release_orchestrator.events.sources import PAYLOAD_KIND, WatchedSource
from release_orchestrator.events.trigger import SourceEventTrigger, SqsEventProducer
from release_orchestrator.pipeline.patterns import Patterns

REGION = "us-east-1"
QUEUE = "release-source-events"


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}))
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_EVENTS_WAIT_SECONDS", "0")
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_EVENTS_STARTUP_DELAY", "0")
    with mock_aws():
        yield


@pytest.fixture
def sqs():
    client = boto3.client("sqs", region_name=REGION)
    client.url = client.create_queue(QueueName=QUEUE)["QueueUrl"]
    return client


def send(sqs, event: dict) -> str:
    return sqs.send_message(QueueUrl=sqs.url, MessageBody=json.dumps(event))["MessageId"]


def s3_event(key: str, version: str) -> dict:
    return {
        "id": f"id-{version}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "region": REGION,
        "time": "2024-05-01T10:00:00Z",
        "detail": {"bucket": {"name": "release-artifacts"}, "object": {"key": key, "version-id": version}},
    }


def ecr_event(tag: str, digest: str) -> dict:
    return {
        "id": f"id-{digest}",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "region": REGION,
        "detail": {
            "result": "SUCCESS",
            "action-type": "PUSH",
            "repository-name": "webapp",
            "image-tag": tag,
            "image-digest": digest,
        },
    }


def queue_counts(sqs) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=sqs.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def watchers() -> dict[str, SourceEventTrigger]:
    return {
        "app": SourceEventTrigger.for_source(
            WatchedSource("s3", queue=QUEUE, bucket="release-artifacts", key="app.zip")
        ),
        "docs": SourceEventTrigger.for_source(
            WatchedSource("s3", queue=QUEUE, bucket="release-artifacts", key="docs.zip")
        ),
        "image": SourceEventTrigger.for_source(
            WatchedSource("ecr", queue=QUEUE, repository="webapp", image_tag="latest")
        ),
    }


class Runner:
    """What the triggerer does with shared-stream triggers: subscribe, filter, bind, confirm persisted."""

    def __init__(self, triggers: dict[str, SourceEventTrigger], ack_timeout: float = 30.0):
        self.manager = SharedStreamManager(ack_timeout=ack_timeout)
        self.triggers = triggers
        self.events: dict[str, list[dict]] = {name: [] for name in triggers}
        self.unconfirmed: list[int] = []
        self.tasks: list[asyncio.Task] = []
        keys = {t.shared_stream_key() for t in triggers.values()}
        assert len(keys) == 1  # one queue: one shared poll
        self.key = keys.pop()

    def start(self, confirm: bool = True) -> None:
        for trigger_id, (name, trigger) in enumerate(self.triggers.items()):
            self.tasks.append(asyncio.create_task(self._run(trigger_id, name, trigger, confirm)))

    async def _run(self, trigger_id: int, name: str, trigger: SourceEventTrigger, confirm: bool) -> None:
        stream = self.manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=self.key)
        async for event in trigger.filter_shared_stream(stream):
            seq = self.manager.bind_pending_event(trigger_id=trigger_id, key=self.key)
            self.events[name].append(event.payload)
            if confirm:
                self.manager.confirm_persisted([seq])
            else:
                self.unconfirmed.append(seq)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.manager.stop_all()


async def settle(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def test_one_poll_fans_out_and_each_watcher_fires_only_for_its_source(sqs):
    async def scenario():
        runner = Runner(watchers())
        runner.start()
        send(sqs, s3_event("app.zip", "v1"))
        send(sqs, s3_event("other.zip", "v2"))  # watched by nobody
        send(sqs, ecr_event("latest", "sha256:" + "1" * 64))
        send(sqs, ecr_event("v2", "sha256:" + "2" * 64))  # another tag
        send(sqs, "not an event")
        await settle(lambda: runner.events["app"] and runner.events["image"])
        # Handled messages are deleted once every watcher moved past them and their events were stored.
        await settle(lambda: queue_counts(sqs) == (0, 0))
        await runner.stop()
        return runner.events

    events = asyncio.run(scenario())
    assert [e["source"]["version_id"] for e in events["app"]] == ["v1"]
    assert events["docs"] == []
    assert [e["source"]["image_digest"] for e in events["image"]] == ["sha256:" + "1" * 64]
    payload = events["app"][0]
    assert payload["kind"] == PAYLOAD_KIND and payload["event"]["source"] == "aws.s3"
    assert payload["sqs"]["queue"] == QUEUE and payload["sqs"]["message_id"]


def test_a_message_whose_event_was_not_stored_stays_in_the_queue_and_fires_once(sqs, monkeypatch):
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_EVENTS_VISIBILITY_TIMEOUT", "1")
    advanced = []  # the batches the producer has finished deciding about (delete or leave)
    advance = SqsEventProducer.advance

    async def recording_advance(self, batch):
        await advance(self, batch)
        advanced.append(batch)

    monkeypatch.setattr(SqsEventProducer, "advance", recording_advance)

    async def scenario():
        # Persist confirmations never come: the ack timeout fails the watcher, the message is not deleted.
        runner = Runner({"app": watchers()["app"]}, ack_timeout=0.5)
        runner.start(confirm=False)
        send(sqs, s3_event("app.zip", "v1"))
        await settle(lambda: runner.events["app"])
        await settle(lambda: advanced)
        counts = queue_counts(sqs)
        await runner.stop()
        return runner, counts

    runner, counts = asyncio.run(scenario())
    assert sum(counts) == 1  # still there, for redelivery

    # The same trigger instance (its memory of fired messages) sees the redelivery: nothing fires twice.
    trigger = runner.triggers["app"]
    [message] = sqs.receive_message(QueueUrl=sqs.url, WaitTimeSeconds=3).get("Messages", [])
    assert trigger.events_for(message) == []
    assert SourceEventTrigger.for_source(trigger.watched).events_for(message)[0].payload["source"]["version_id"] == "v1"


def test_codecommit_watcher_fires_for_matching_branches_only():
    watcher = SourceEventTrigger.for_source(
        WatchedSource(
            "codecommit", queue=QUEUE, repository="webapp", branches=Patterns(("main", "release/*"), ("release/old-*",))
        )
    )

    def message(branch: str, n: int) -> dict:
        event = {
            "id": f"e{n}",
            "source": "aws.codecommit",
            "detail-type": "CodeCommit Repository State Change",
            "detail": {
                "event": "referenceUpdated",
                "referenceType": "branch",
                "referenceName": branch,
                "repositoryName": "webapp",
                "commitId": f"{n:040x}",
            },
        }
        return {"MessageId": f"m{n}", "Body": json.dumps(event)}

    fired = [
        e.payload["source"]["branch"]
        for n, b in enumerate(["main", "dev", "release/1", "release/old-1"])
        for e in watcher.events_for(message(b, n))
    ]
    assert fired == ["main", "release/1"]


def test_serialization_round_trip_and_shared_key():
    trigger = watchers()["image"]
    classpath, kwargs = trigger.serialize()
    assert classpath == "release_orchestrator.events.trigger.SourceEventTrigger"
    again = SourceEventTrigger(**kwargs)
    assert again.watched == trigger.watched
    assert again.shared_stream_key() == ("release-orchestrator-sqs", QUEUE, "aws_default", None)
    elsewhere = SourceEventTrigger(**{**kwargs, "region_name": "eu-west-1"})
    assert elsewhere.shared_stream_key() != trigger.shared_stream_key()


def test_producer_waits_for_a_missing_queue_then_reads_it(caplog):
    async def scenario():
        producer = SqsEventProducer("created-later", startup_delay=0, wait_seconds=0)
        stream = producer.open_stream()
        first = asyncio.create_task(stream.__anext__())
        await settle(lambda: first.done() or "'created-later' does not exist (yet)" in caplog.text)
        assert not first.done()  # retrying, not failing
        client = boto3.client("sqs", region_name=REGION)
        url = client.create_queue(QueueName="created-later")["QueueUrl"]
        client.send_message(QueueUrl=url, MessageBody="{}")
        message, receipt = await asyncio.wait_for(first, timeout=10)
        await producer.aclose()
        await stream.aclose()
        return message, receipt

    message, receipt = asyncio.run(scenario())
    assert message["Body"] == "{}" and receipt == message["ReceiptHandle"]
