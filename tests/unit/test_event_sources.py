"""Event-driven sources: reading AWS events out of SQS messages, matching them, the spec entries, the setup."""

from __future__ import annotations

import json
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from release_orchestrator.events import setup as events_setup
from release_orchestrator.events.sources import (
    DEFAULT_QUEUE,
    PAYLOAD_KIND,
    WatchedSource,
    changes_in_asset_events,
    changes_in_message,
    latest_change,
)
from release_orchestrator.events.spec import parse_event_triggers, watched_sources
from release_orchestrator.events.trigger import SourceEventTrigger, SqsEventProducer
from release_orchestrator.pipeline.api import action, pipeline, stage, variable
from release_orchestrator.pipeline.patterns import Patterns
from release_orchestrator.webhooks.filters import parse_triggers, validate_triggers

REGION = "us-east-1"


# --- AWS events as EventBridge delivers them (shapes from the AWS documentation) ----------------------------


def s3_event(bucket="release-artifacts", key="webapp/app.zip", version="v1", etag_field="etag", event_id="e-s3"):
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2024-05-01T10:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": 5,
                etag_field: "b1946ac92492d2347c6235b4d2611184",
                "version-id": version,
                "sequencer": "00617F08299329D189",
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def ecr_event(repository="webapp", tag="latest", digest="sha256:" + "a" * 64, action="PUSH", result="SUCCESS"):
    detail = {"result": result, "repository-name": repository, "image-digest": digest, "action-type": action}
    if tag:
        detail["image-tag"] = tag
    return {
        "version": "0",
        "id": "e-ecr",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": "123456789012",
        "time": "2024-05-01T10:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


def codecommit_event(repository="webapp", branch="main", commit="c" * 40, event="referenceUpdated", kind="branch"):
    return {
        "version": "0",
        "id": "e-cc",
        "detail-type": "CodeCommit Repository State Change",
        "source": "aws.codecommit",
        "account": "123456789012",
        "time": "2024-05-01T10:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:codecommit:{REGION}:123456789012:{repository}"],
        "detail": {
            "callerUserArn": "arn:aws:iam::123456789012:user/dev",
            "commitId": commit,
            "event": event,
            "oldCommitId": "b" * 40,
            "referenceFullName": f"refs/heads/{branch}",
            "referenceName": branch,
            "referenceType": kind,
            "repositoryId": "r-1",
            "repositoryName": repository,
        },
    }


def only_change(body) -> dict:
    [(change, _)] = changes_in_message(json.dumps(body) if isinstance(body, dict) else body)
    return change


def test_s3_object_created_event_gives_bucket_key_and_version():
    change = only_change(s3_event(version="3HL4kqtJlcpXroDTDmJ", etag_field="etag"))
    assert (change["provider"], change["bucket"], change["object_key"]) == ("s3", "release-artifacts", "webapp/app.zip")
    assert change["version_id"] == "3HL4kqtJlcpXroDTDmJ"
    assert change["etag"] == "b1946ac92492d2347c6235b4d2611184"
    assert only_change(s3_event(etag_field="eTag"))["etag"] == "b1946ac92492d2347c6235b4d2611184"  # moto's spelling


def test_ecr_push_event_gives_repository_tag_and_digest():
    change = only_change(ecr_event(tag="v1.2", digest="sha256:" + "d" * 64))
    assert change == {
        **change,
        "provider": "ecr",
        "repository": "webapp",
        "image_tag": "v1.2",
        "image_digest": "sha256:" + "d" * 64,
    }


def test_codecommit_event_gives_branch_and_commit():
    change = only_change(codecommit_event(branch="release/1.0", commit="f" * 40, event="referenceCreated"))
    assert (change["provider"], change["repository"], change["branch"]) == ("codecommit", "webapp", "release/1.0")
    assert change["commit_id"] == "f" * 40 and change["old_commit_id"] == "b" * 40


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"hello": "world"}),
        json.dumps(ecr_event(action="DELETE")),
        json.dumps(ecr_event(result="FAILURE")),
        json.dumps(codecommit_event(event="referenceDeleted")),
        json.dumps(codecommit_event(kind="tag")),
        json.dumps({**s3_event(), "detail-type": "Object Deleted"}),
        json.dumps({**s3_event(), "source": "aws.ec2"}),
    ],
)
def test_messages_that_report_no_source_change(body):
    assert changes_in_message(body) == []


def test_an_event_wrapped_in_an_sns_notification_is_read():
    envelope = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": json.dumps(ecr_event(tag="prod")),
    }
    assert only_change(envelope)["image_tag"] == "prod"


def test_s3_event_notification_records_are_read_with_decoded_keys():
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2024-05-01T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": "b1"},
            "object": {"key": "my+app/v%5B1%5D.zip", "versionId": "v9", "eTag": "e", "sequencer": "s"},
        },
    }
    removed = {**record, "eventName": "ObjectRemoved:Delete"}
    changes = [c for c, _ in changes_in_message(json.dumps({"Records": [record, removed]}))]
    assert [(c["bucket"], c["object_key"], c["version_id"]) for c in changes] == [("b1", "my app/v[1].zip", "v9")]


# --- matching -----------------------------------------------------------------------------------------------


def test_an_s3_source_matches_its_bucket_and_key_only():
    source = WatchedSource("s3", bucket="release-artifacts", key="webapp/app.zip")
    assert source.matches(only_change(s3_event()))
    assert "object 'webapp/app.zip.bak'" in source.rejects(only_change(s3_event(key="webapp/app.zip.bak")))
    assert "bucket 'other'" in source.rejects(only_change(s3_event(bucket="other")))
    assert "a ecr event" in source.rejects(only_change(ecr_event()))


def test_an_ecr_source_matches_its_repository_and_tag_only():
    source = WatchedSource("ecr", repository="webapp", image_tag="latest")
    assert source.matches(only_change(ecr_event()))
    assert not source.matches(only_change(ecr_event(tag="v2")))
    assert not source.matches(only_change(ecr_event(tag=None)))  # an untagged push
    assert not source.matches(only_change(ecr_event(repository="api")))


def test_a_codecommit_source_matches_branches_with_excludes_winning():
    source = WatchedSource(
        "codecommit",
        repository="webapp",
        branches=Patterns(includes=("main", "release/*"), excludes=("release/old-*",)),
    )
    assert source.matches(only_change(codecommit_event(branch="main")))
    assert source.matches(only_change(codecommit_event(branch="release/2.0")))
    assert "excluded by 'release/old-*'" in source.rejects(only_change(codecommit_event(branch="release/old-1")))
    assert "matches none of the includes" in source.rejects(only_change(codecommit_event(branch="feature/x")))
    assert not source.matches(only_change(codecommit_event(repository="api")))


# --- spec entries -------------------------------------------------------------------------------------------


def spec(*triggers, region=None, **source_config):
    stages = [
        stage(
            "Source",
            [
                action("Artifact", "source.s3", bucket="release-artifacts", object_key="webapp/app.zip"),
                action("Image", "source.ecr", repository="webapp", region="eu-west-1", aws_conn_id="aws_images"),
                action("Checkout", "source.codecommit", repository="webapp", branch="main"),
            ],
        )
    ]
    p = pipeline("events", stages=stages, region=region)
    p.triggers = list(triggers)
    return p


def test_event_triggers_resolve_with_defaults_and_source_actions():
    p = spec(
        {"provider": "s3", "source_action": "Artifact"},
        {"provider": "ecr", "source_action": "Image"},
        {"provider": "codecommit", "source_action": "Checkout"},
        {
            "provider": "codecommit",
            "repository": "tools",
            "branches": {"excludes": ["wip/*"]},
            "queue": "tools-events",
            "aws_conn_id": "aws_tools",
            "region": "us-west-2",
        },
    )
    found, problems = parse_event_triggers(p)
    assert problems == []
    s3, ecr, cc, tools = (source for _, source in found)
    assert (s3.bucket, s3.key, s3.queue, s3.aws_conn_id, s3.region) == (
        "release-artifacts",
        "webapp/app.zip",
        DEFAULT_QUEUE,
        "aws_default",
        None,
    )
    # The ECR action's own connection and region (cross-account, cross-region) are where its events arrive.
    assert (ecr.repository, ecr.image_tag, ecr.aws_conn_id, ecr.region) == (
        "webapp",
        "latest",
        "aws_images",
        "eu-west-1",
    )
    assert cc.branches == Patterns(includes=("main",))
    assert (tools.queue, tools.aws_conn_id, tools.region, tools.branches.excludes) == (
        "tools-events",
        "aws_tools",
        "us-west-2",
        ("wip/*",),
    )


def test_event_triggers_are_checked_with_the_spec_and_ignored_by_webhooks():
    good = spec(
        {"provider": "ecr", "repository": "webapp"},
        {"provider": "github", "repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}},
    )
    triggers, problems = parse_triggers(good)
    assert problems == [] and [t.provider for t in triggers] == ["github"]
    assert watched_sources(good) == [WatchedSource("ecr", repository="webapp", image_tag="latest")]


@pytest.mark.parametrize(
    "trigger, message",
    [
        (
            {"provider": "s3", "bucket": "b"},
            "triggers[0].key: missing: a s3 trigger needs key or a source_action of type source.s3",
        ),
        (
            {"provider": "s3", "bucket": "b", "object_key": "k", "key": "k"},
            "triggers[0].object_key: unknown field for a s3 trigger (did you mean 'key'?); allowed fields: provider, "
            "source_action, queue, aws_conn_id, region, bucket, key",
        ),
        (
            {"provider": "ecr", "source_action": "Artifact"},
            "triggers[0].source_action: action 'Artifact' is a source.s3 action; a ecr trigger watches a source.ecr action",
        ),
        (
            {"provider": "ecr", "source_action": "Imag"},
            "triggers[0].source_action: no action named 'Imag' (did you mean 'Image'?)",
        ),
        (
            {"provider": "codecommit", "repository": "r"},
            "triggers[0].branches: missing: a codecommit trigger needs branches or a source_action of type source.codecommit",
        ),
        (
            {"provider": "codecommit", "repository": "r", "branches": "main"},
            "triggers[0].branches: expected a list of branch patterns, or a mapping with includes and/or excludes",
        ),
        (
            {"provider": "codecommit", "repository": "r", "branches": {"include": ["main"]}},
            "triggers[0].branches.include: unknown field (did you mean 'includes'?); allowed fields: includes, excludes",
        ),
        (
            {"provider": "ecr", "repository": "webapp", "queue": "has spaces"},
            "triggers[0].queue: expected an SQS queue name (letters, digits, - and _, at most 80) or a queue URL, got 'has spaces'",
        ),
        (
            {"provider": "ecr", "repository": "webapp", "image_tag": "#{variables.Tag}"},
            "triggers[0].image_tag: references (#{...}) are resolved when a run starts; a trigger must name what it watches "
            "literally",
        ),
        ({"provider": "s3", "bucket": 3, "key": "k"}, "triggers[0].bucket: expected a non-empty string, got 3"),
    ],
)
def test_event_trigger_problems_name_the_field(trigger, message):
    assert message in validate_triggers(spec(trigger))


def test_a_source_action_configured_by_reference_needs_the_field_on_the_trigger():
    p = pipeline(
        "by-ref",
        stages=[
            stage(
                "Source", [action("Checkout", "source.codecommit", repository="webapp", branch="#{variables.Branch}")]
            )
        ],
        variables=[variable("Branch", "main")],
    )
    p.triggers = [{"provider": "codecommit", "source_action": "Checkout"}]
    assert validate_triggers(p) == [
        "triggers[0].branches: the source action's branch is a reference "
        "(#{variables.Branch}); give branches on the trigger"
    ]
    p.triggers = [{"provider": "codecommit", "source_action": "Checkout", "branches": ["main", "release/*"]}]
    assert validate_triggers(p) == []


def test_a_queue_url_is_accepted_and_read_without_a_lookup():
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/release-source-events"
    with_url = spec({"provider": "ecr", "repository": "webapp", "queue": url})
    assert validate_triggers(with_url) == []
    [source] = watched_sources(with_url)
    producer = SourceEventTrigger.create_shared_stream_producer(SourceEventTrigger.for_source(source).serialize()[1])
    with mock.patch.object(SqsEventProducer, "client", side_effect=AssertionError("GetQueueUrl called")):
        assert producer.queue_url() == url
    # Its setup rules are named after the queue, as for a queue given by name.
    assert events_setup.routing_plan([source])[0].rule_name("ecr") == "release-orchestrator-release-source-events-ecr"


def test_the_same_source_watched_twice_is_one_asset_and_one_trigger():
    from airflow.triggers.base import BaseEventTrigger

    from release_orchestrator.events.assets import asset_for

    a = watched_sources(spec({"provider": "s3", "source_action": "Artifact"}))[0]
    b = watched_sources(spec({"provider": "s3", "bucket": "release-artifacts", "key": "webapp/app.zip"}))[0]
    other_queue = watched_sources(spec({"provider": "s3", "source_action": "Artifact", "queue": "q2"}))[0]
    assert a == b and (asset_for(a).name, asset_for(a).uri) == (asset_for(b).name, asset_for(b).uri)
    assert asset_for(other_queue).uri != asset_for(a).uri  # one asset never has two different watchers
    hashes = {BaseEventTrigger.hash(*asset_for(s).watchers[0].trigger.serialize()) for s in (a, b)}
    assert len(hashes) == 1


# --- a run's revision from its triggering asset events ------------------------------------------------------


class FakeAssetEvent:
    def __init__(self, extra, timestamp):
        self.extra, self.timestamp = extra, timestamp


def test_latest_change_about_this_source_wins():
    ours = WatchedSource("s3", bucket="release-artifacts", key="webapp/app.zip")
    events = {
        "asset-a": [
            FakeAssetEvent(
                {"from_trigger": True, "payload": {"kind": PAYLOAD_KIND, "event": s3_event(version="v2")}},
                "2024-05-01T10:00:02+00:00",
            ),
            FakeAssetEvent(
                {"from_trigger": True, "payload": {"kind": PAYLOAD_KIND, "event": s3_event(version="v1")}},
                "2024-05-01T10:00:01+00:00",
            ),
        ],
        "asset-b": [
            FakeAssetEvent(
                {"from_trigger": True, "payload": {"kind": PAYLOAD_KIND, "event": ecr_event()}},
                "2024-05-01T10:00:03+00:00",
            ),
            FakeAssetEvent({}, "2024-05-01T10:00:04+00:00"),
        ],  # e.g. a producer DAG's event: no change
    }
    assert [c["provider"] for c in changes_in_asset_events(events)] == ["s3", "s3", "ecr"]
    assert latest_change(events, ours.matches)["version_id"] == "v2"
    assert latest_change(events, WatchedSource("s3", bucket="x", key="y").matches) is None
    assert latest_change({}, ours.matches) is None


def test_an_aws_event_posted_as_the_asset_event_extra_is_read_too():
    events = {"a": [FakeAssetEvent(codecommit_event(commit="9" * 40), "2024-05-01T10:00:00+00:00")]}
    assert latest_change(events, lambda c: True)["commit_id"] == "9" * 40


# --- defaults and setup -------------------------------------------------------------------------------------


def test_the_sandbox_creates_the_default_queue(aws):
    from include.sandbox.events import seed_events
    from include.sandbox.resources import ARTIFACT_BUCKET

    aws("s3").create_bucket(Bucket=ARTIFACT_BUCKET)
    url = seed_events("unused", client=lambda service, _endpoint: aws(service))
    assert aws("sqs").get_queue_url(QueueName=DEFAULT_QUEUE)["QueueUrl"] == url


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield lambda service, region=None: boto3.client(service, region_name=region or REGION)


def test_setup_routes_exactly_the_watched_sources_to_the_queue(aws):
    s3 = aws("s3")
    for bucket in ("watched-bucket", "other-bucket"):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket="watched-bucket", NotificationConfiguration={"TopicConfigurations": []}
    )
    sources = [
        WatchedSource("s3", bucket="watched-bucket", key="app.zip"),
        WatchedSource("ecr", repository="webapp", image_tag="latest"),
        WatchedSource("codecommit", repository="webapp", branches=Patterns(("main",))),
    ]
    [routing] = events_setup.routing_plan(sources)
    lines: list[str] = []
    url = events_setup.apply(routing, aws, say=lines.append)
    assert events_setup.apply(routing, aws, say=lines.append) == url  # idempotent
    assert aws("sqs").list_queues()["QueueUrls"] == [url]
    assert aws("sqs").get_queue_url(QueueName=DEFAULT_QUEUE)["QueueUrl"] == url
    rules = aws("events").list_rules(NamePrefix="release-orchestrator")["Rules"]
    assert sorted(r["Name"] for r in rules) == [
        "release-orchestrator-release-source-events-codecommit",
        "release-orchestrator-release-source-events-ecr",
        "release-orchestrator-release-source-events-s3",
    ]
    policy = json.loads(
        aws("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    assert policy["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}

    s3.put_object(Bucket="watched-bucket", Key="app.zip", Body=b"1")
    s3.put_object(Bucket="watched-bucket", Key="notes.txt", Body=b"1")  # not a watched key
    s3.put_object(Bucket="other-bucket", Key="app.zip", Body=b"1")  # no EventBridge notifications there
    events = aws("events")
    events.put_events(
        Entries=[
            {"Source": e["source"], "DetailType": e["detail-type"], "Detail": json.dumps(e["detail"])}
            for e in (ecr_event(), ecr_event(repository="api"), codecommit_event(), codecommit_event(repository="api"))
        ]
    )
    bodies = []
    while batch := aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [m["Body"] for m in batch]
        aws("sqs").delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )
    changes = sorted(
        (c["provider"], c.get("bucket") or c.get("repository")) for b in bodies for c, _ in changes_in_message(b)
    )
    assert changes == [("codecommit", "webapp"), ("ecr", "webapp"), ("s3", "watched-bucket")]
