"""Stages and actions starting and succeeding, in real Airflow processes (tests/integration/pipelines/
nt-lifecycle.yaml): one run publishes each event once, in the order the run went, from the worker (a source
action ending there), the triggerer (builds their triggers end) and the dag-processor (the run's end); the
stage its entry conditions skip is not announced."""

from __future__ import annotations

import json
import time

import pytest

from include.sandbox import resources
from include.sandbox.client import SandboxClient
from tests.integration.helpers import aws_client, create_build_project, ti_states, wait_for_run

pytestmark = pytest.mark.integration

PIPELINE = "nt-lifecycle"
TOPIC = "nt-lifecycle"  # the pipeline's own topic: the shared inbox's readers never see these messages
BUILD_SPEC = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ok\n"


@pytest.fixture(scope="module")
def own_inbox(airflow_env, api):
    """The pipeline's topic with a queue of its own subscribed; returns a reader of the queue."""
    api.wait_for_dag(PIPELINE, timeout=240)
    create_build_project(aws_client(airflow_env, "codebuild"), PIPELINE, "acme/webapp", BUILD_SPEC)
    SandboxClient(airflow_env.sandbox_url).set_fault("codebuild", PIPELINE, "slow", seconds=1)
    sns, sqs = aws_client(airflow_env, "sns"), aws_client(airflow_env, "sqs")
    topic = sns.create_topic(Name=TOPIC)["TopicArn"]
    assert topic == f"arn:aws:sns:{resources.REGION}:{resources.ACCOUNT_ID}:{TOPIC}"
    queue = sqs.create_queue(QueueName=f"{TOPIC}-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def read(until: str, timeout: float = 120) -> list[dict]:
        """Every message up to the one whose subject starts with `until`, and what comes in 3 s after it."""
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while quiet_until is None or time.monotonic() < quiet_until:
            assert time.monotonic() < deadline, f"no {until!r} within {timeout:.0f}s: {messages}"
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            for message in batch:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                messages.append(json.loads(message["Body"]))
            if quiet_until is None and any(m["Subject"].startswith(until) for m in messages):
                quiet_until = time.monotonic() + 3  # a late duplicate would show up in this window
        return messages

    return read


def what(envelope: dict) -> tuple[str, ...]:
    """(level, state, stage.action) of a message, from its CodePipeline-shaped body."""
    event = json.loads(envelope["Message"])
    detail = event["detail"]
    level = event["detail-type"].removeprefix("CodePipeline ").split()[0].lower()
    where = ".".join(part for part in (detail.get("stage"), detail.get("action")) if part)
    return (level, detail["state"], where) if where else (level, detail["state"])


def test_one_run_publishes_each_stage_and_action_event_once_in_order(api, own_inbox):
    run_id = api.trigger(PIPELINE)["dag_run_id"]
    run = wait_for_run(api, PIPELINE, run_id, timeout=240)
    states = ti_states(api, PIPELINE, run_id)
    assert run["state"] == "success", states
    assert (states["Extras.Conditions"], states["Extras.Smoke"]) == ("skipped", "skipped"), states

    messages = own_inbox(until="SUCCEEDED: pipeline")
    assert {json.loads(m["Message"])["detail"]["execution-id"] for m in messages} == {run_id}
    assert [what(m) for m in messages] == [
        ("pipeline", "STARTED"),
        ("stage", "STARTED", "Source"),
        ("action", "STARTED", "Source.Checkout"),
        ("action", "SUCCEEDED", "Source.Checkout"),  # in the worker
        ("stage", "SUCCEEDED", "Source"),
        ("stage", "STARTED", "Build"),
        ("action", "STARTED", "Build.Compile"),
        ("action", "SUCCEEDED", "Build.Compile"),  # by the build's trigger
        ("action", "STARTED", "Build.Unit"),
        ("action", "SUCCEEDED", "Build.Unit"),
        ("stage", "SUCCEEDED", "Build"),
        # Extras: skipped by its entry conditions, neither started nor succeeded.
        ("stage", "STARTED", "Final"),
        ("action", "STARTED", "Final.Announce"),
        ("action", "SUCCEEDED", "Final.Announce"),
        ("stage", "SUCCEEDED", "Final"),  # the run's success callback, before the pipeline's
        ("pipeline", "SUCCEEDED"),
    ]
    assert [m["MessageAttributes"]["event"]["Value"] for m in messages][:4] == [
        "pipeline-started",
        "stage-started",
        "action-started",
        "action-succeeded",
    ]
    # Subjects are cut at SNS's 100 characters: the run id of a manual run is long.
    assert messages[1]["Subject"].startswith(f"STARTED: stage Source of pipeline {PIPELINE} (run manual__")
    assert messages[2]["Subject"].startswith(f"STARTED: action Source.Checkout of pipeline {PIPELINE} (run manual__")
