"""What a pipeline's DAG is scheduled on (cron, watched sources, both) and what its source actions release."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import boto3
import pytest
from airflow.sdk import Asset, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable
from airflow.serialization.serialized_objects import DagSerialization
from moto import mock_aws

from release_orchestrator.events.sources import PAYLOAD_KIND
from release_orchestrator.events.trigger import SourceEventTrigger
from release_orchestrator.operators.source import EcrSourceOperator, GitSourceOperator, S3SourceOperator, run_source
from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.api import action, pipeline, stage

REGION = "us-east-1"


def spec(triggers=(), schedule=None, name="scheduled"):
    p = pipeline(
        name,
        schedule=schedule,
        stages=[
            stage(
                "Source",
                [
                    action("Artifact", "source.s3", bucket="release-artifacts", object_key="app.zip"),
                    action("Image", "source.ecr", repository="webapp", image_tag="prod"),
                ],
            )
        ],
    )
    p.triggers = list(triggers)
    return p


S3_TRIGGER = {"provider": "s3", "source_action": "Artifact"}
ECR_TRIGGER = {"provider": "ecr", "source_action": "Image"}


def test_cron_schedule_compiles_to_a_cron_timetable():
    dag = compiler.build_dag(spec(schedule="0 6 * * 1-5"))
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 6 * * 1-5"
    assert dag.catchup is False
    preset = compiler.build_dag(spec(schedule="@daily"))
    assert preset.timetable.expression in ("@daily", "0 0 * * *")


def test_no_schedule_and_no_event_trigger_means_runs_start_by_hand_or_webhook():
    dag = compiler.build_dag(spec())
    assert type(dag.timetable).__name__ == "NullTimetable"


def test_an_event_trigger_schedules_the_dag_on_a_watched_asset():
    dag = compiler.build_dag(spec([S3_TRIGGER]))
    asset = dag.timetable.asset_condition
    assert isinstance(asset, Asset)
    assert asset.name == "s3://release-artifacts/app.zip via sqs release-source-events"
    [watcher] = asset.watchers
    assert isinstance(watcher.trigger, SourceEventTrigger)
    assert watcher.trigger.serialize()[1] == {
        "provider": "s3",
        "queue": "release-source-events",
        "aws_conn_id": "aws_default",
        "region_name": None,
        "bucket": "release-artifacts",
        "key": "app.zip",
        "repository": None,
        "image_tag": None,
        "branches": [],
        "branches_excluded": [],
    }


def test_several_sources_start_the_pipeline_when_any_changes_and_cron_adds_to_them():
    dag = compiler.build_dag(spec([S3_TRIGGER, ECR_TRIGGER], schedule="30 2 * * *"))
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == "30 2 * * *"
    condition = dag.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert [a.name.split(" via ")[0] for a in condition.objects] == [
        "s3://release-artifacts/app.zip",
        "ecr webapp:prod",
    ]


def test_webhook_triggers_do_not_change_the_schedule():
    git = {"provider": "github", "repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}}
    assert compiler.build_dag(spec([git], schedule="@hourly")).timetable.expression in ("@hourly", "0 * * * *")


def test_event_driven_dag_serializes_with_its_watcher():
    dag = compiler.build_dag(spec([S3_TRIGGER, ECR_TRIGGER]))
    data = json.dumps(DagSerialization.to_dict(dag))
    assert "release_orchestrator.events.trigger.SourceEventTrigger" in data
    restored = DagSerialization.from_dict(json.loads(data))
    assert restored.dag_id == "scheduled"


# --- source actions reading the run's triggering asset events -----------------------------------------------


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}))
    with mock_aws():
        yield


def asset_events(*aws_events, start: int = 0) -> dict:
    return {
        "the-asset": [
            SimpleNamespace(
                extra={"from_trigger": True, "payload": {"kind": PAYLOAD_KIND, "event": e}},
                timestamp=f"2024-05-01T10:00:{start + i:02d}+00:00",
            )
            for i, e in enumerate(aws_events)
        ]
    }


def context(events=None, conf=None, params=None) -> dict:
    return {
        "dag_run": SimpleNamespace(conf=conf or {}),
        "params": params or {},
        "triggering_asset_events": events or {},
        "task": None,
    }


def s3_event(key: str, version: str) -> dict:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "release-artifacts"}, "object": {"key": key, "version-id": version}},
    }


def test_s3_source_releases_the_version_of_the_latest_event_about_its_object(aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="release-artifacts")
    s3.put_bucket_versioning(Bucket="release-artifacts", VersioningConfiguration={"Status": "Enabled"})
    v1, v2, v3 = (
        s3.put_object(Bucket="release-artifacts", Key="app.zip", Body=str(i).encode())["VersionId"] for i in range(3)
    )
    other = s3.put_object(Bucket="release-artifacts", Key="other.zip", Body=b"x")["VersionId"]
    op = S3SourceOperator(task_id="Artifact", bucket="release-artifacts", object_key="app.zip")

    events = asset_events(s3_event("app.zip", v1), s3_event("app.zip", v2), s3_event("other.zip", other))
    assert op.execute(context(events))["VersionId"] == v2  # two uploads folded into one run: the latest
    assert op.execute(context(events, params={"source_revision": v1}))["VersionId"] == v1  # the form wins
    assert op.execute(context(asset_events(s3_event("other.zip", other))))["VersionId"] == v3  # none of ours: latest


def test_ecr_source_releases_the_pushed_digest(aws):
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="webapp")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + "c" * 64,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 1,
                "digest": "sha256:" + uuid.uuid4().hex * 2,
            }
        ],
    }
    digest = ecr.put_image(repositoryName="webapp", imageManifest=json.dumps(manifest), imageTag="prod")["image"][
        "imageId"
    ]["imageDigest"]
    ecr.put_image(repositoryName="webapp", imageManifest=json.dumps(manifest), imageTag="also-this")
    event = {
        "source": "aws.ecr",
        "detail-type": "ECR Image Action",
        "detail": {
            "result": "SUCCESS",
            "action-type": "PUSH",
            "repository-name": "webapp",
            "image-tag": "prod",
            "image-digest": digest,
        },
    }
    out = EcrSourceOperator(task_id="Image", repository="webapp", image_tag="prod").execute(
        context(asset_events(event))
    )
    assert (out["ImageDigest"], out["ImageTag"]) == (digest, "prod")
    assert out["ImageURI"].endswith(f"/webapp@{digest}")


def test_pushes_to_a_branch_are_ordered_by_their_commits_not_by_when_their_events_arrived():
    def push(commit: str, old: str | None) -> dict:
        detail = {"event": "referenceUpdated", "referenceType": "branch", "referenceName": "main"}
        detail.update(repositoryName="webapp", commitId=commit, oldCommitId=old)
        return {"source": "aws.codecommit", "detail-type": "CodeCommit Repository State Change", "detail": detail}

    op = GitSourceOperator(task_id="Checkout", repository="webapp", branch="main", provider="codecommit")
    # The queue handed the newer push (b, after a) over first: the run still releases b.
    released = run_source(context(asset_events(push("b" * 40, "a" * 40), push("a" * 40, "0" * 40))), op.accepts)
    assert released["commit_id"] == "b" * 40
    in_order = run_source(context(asset_events(push("a" * 40, "0" * 40), push("b" * 40, "a" * 40))), op.accepts)
    assert in_order["commit_id"] == "b" * 40


def test_codecommit_source_releases_the_pushed_commit_and_branch(github_api):
    event = {
        "source": "aws.codecommit",
        "detail-type": "CodeCommit Repository State Change",
        "detail": {
            "event": "referenceUpdated",
            "referenceType": "branch",
            "referenceName": "release/3",
            "repositoryName": "webapp",
            "commitId": "a" * 40,
        },
    }
    # What the action releases (it then reads that commit from CodeCommit: tests/unit/test_codecommit_source.py).
    op = GitSourceOperator(task_id="Checkout", repository="webapp", branch="main", provider="codecommit")
    released = run_source(context(asset_events(event)), op.accepts)
    assert (released["commit_id"], released["branch"], released["repository"]) == ("a" * 40, "release/3", "webapp")
    other = GitSourceOperator(task_id="Checkout", repository="other", branch="main", provider="codecommit")
    assert run_source(context(asset_events(event)), other.accepts) == {}
    # A webhook's or manual run's conf["source"] comes before events.
    manual = run_source(context(asset_events(event), conf={"source": {"commit_id": "b" * 40}}), op.accepts)
    assert manual["commit_id"] == "b" * 40
    # A GitHub source never takes a CodeCommit event: naming no revision, the run releases its branch's head.
    github = GitSourceOperator(task_id="Checkout", repository="acme/webapp", branch="main", provider="github")
    head = github_api.repositories["acme/webapp"].branches["main"]
    assert github.execute(context(asset_events(event)))["CommitId"] == head
