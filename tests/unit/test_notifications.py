"""CodePipeline-shaped SNS messages, published through the provider's SNS hook (moto)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.notifier import PipelineEventNotifier, publish


@pytest.fixture
def topic_and_queue(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": "us-east-1"}}))
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="release-notifications")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

        def received():
            out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"]) for m in out]

        yield topic, received


def failure_context(task_id="Build.Compile", exception="build FAILED in phase BUILD"):
    stored = {"_codebuild_build": {"region_name": "us-east-1", "aws_domain": "aws.amazon.com",
                                   "build_id": "webapp-build:1234", "project_name": "webapp-build"}}
    ti = SimpleNamespace(task_id=task_id, xcom_pull=lambda task_ids, key: stored.get(key))
    return {"run_id": "manual__1", "ti": ti, "exception": RuntimeError(exception)}


def test_action_failure_message_names_everything(topic_and_queue):
    topic, received = topic_and_queue
    notifier = PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic)
    notifier.notify(failure_context())
    [envelope] = received()
    assert envelope["Subject"] == "FAILED: action Build.Compile of pipeline webapp-release (run manual__1)"
    event = json.loads(envelope["Message"])
    assert event["detail-type"] == "CodePipeline Action Execution State Change"
    detail = event["detail"]
    assert (detail["pipeline"], detail["execution-id"], detail["stage"], detail["action"], detail["state"]) == (
        "webapp-release", "manual__1", "Build", "Compile", "FAILED")
    assert "phase BUILD" in detail["error-summary"]
    assert detail["aws-console-link"] == (
        "https://console.aws.amazon.com/codesuite/codebuild/projects/webapp-build/build/webapp-build%3A1234/"
        "?region=us-east-1")
    assert detail["airflow-log-link"].endswith("/dags/webapp-release/runs/manual__1/tasks/Build.Compile")


def test_pipeline_failed_names_the_failed_stage(topic_and_queue):
    topic, received = topic_and_queue
    PipelineEventNotifier(event="pipeline-failed", pipeline="webapp-release", target_arn=topic).notify(
        failure_context("Deploy.ECS"))
    [envelope] = received()
    event = json.loads(envelope["Message"])
    assert event["detail-type"] == "CodePipeline Pipeline Execution State Change"
    assert event["detail"]["state"] == "FAILED"
    assert event["detail"]["failed-stage"] == "Deploy" and event["detail"]["failed-action"] == "ECS"
    assert envelope["Subject"].startswith("FAILED: pipeline webapp-release at Deploy.ECS")


def test_unknown_event_is_refused():
    with pytest.raises(ValueError, match="unknown notification event 'pipeline-exploded'"):
        PipelineEventNotifier(event="pipeline-exploded", pipeline="p", target_arn="arn:aws:sns:us-east-1:1:t")


def test_a_failing_publish_is_retried_then_logged_not_raised(caplog, monkeypatch):
    monkeypatch.setattr("release_orchestrator.notifications.notifier.time.sleep", lambda s: None)
    calls = []

    class BrokenHook:
        def publish_to_target(self, **kwargs):
            calls.append(kwargs)
            raise ConnectionError("SNS unreachable")

    assert publish(BrokenHook(), "arn:aws:sns:us-east-1:1:t", "subject", {"a": 1}) is False
    assert len(calls) == 3
    assert "SNS publish to arn:aws:sns:us-east-1:1:t failed after 3 attempts" in caplog.text


def test_subject_is_sns_safe():
    assert messages.subject("a\nb") == "a b"
    assert len(messages.subject("x" * 300)) == 100
    assert messages.subject("déployé") == "d?ploy?"
