import json
import threading

import boto3
import pytest
from moto import mock_aws

from tests.unit.fakes import FakeStateStore, FakeTaskInstance, task_context

REGION = "us-east-1"


@pytest.fixture
def moto_aws(monkeypatch):
    """moto, and an Airflow AWS connection (aws_default) that points at it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}))
    with mock_aws():
        yield


@pytest.fixture
def codebuild_project(moto_aws):
    """A CodeBuild project in moto (webapp-build, sources and artifacts in S3); returns its name."""
    boto3.client("codebuild", region_name=REGION).create_project(
        name="webapp-build",
        source={"type": "S3", "location": "release-artifacts/source.zip"},
        artifacts={"type": "S3", "location": "release-artifacts"},
        environment={"type": "LINUX_CONTAINER", "image": "img", "computeType": "BUILD_GENERAL1_SMALL"},
        serviceRole="arn:aws:iam::123456789012:role/release-service-role",
    )
    return "webapp-build"


@pytest.fixture
def topic_and_queue(moto_aws):
    """An SNS topic with an SQS queue subscribed; returns the topic ARN and a reader of what arrived."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="release-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def received():
        out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in out]

    return topic, received


@pytest.fixture
def store():
    """The task state store of the operator tests' task instance."""
    return FakeStateStore()


@pytest.fixture
def context(store):
    """An operator's context: a task instance and its state store."""
    return task_context(FakeTaskInstance(), store)


@pytest.fixture
def github_api(monkeypatch):
    """The sandbox's GitHub REST API (include/sandbox/github.py) over real HTTP on a free loopback port, and
    an Airflow connection (github_default) that points at it; returns the emulator (to push commits)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from include.sandbox.github import PREFIX, TOKEN, GitHubEmulator

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    emulator = GitHubEmulator()
    server = make_server("127.0.0.1", 0, emulator.serve, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}{PREFIX}"
    monkeypatch.setenv("AIRFLOW_CONN_GITHUB_DEFAULT", json.dumps({"conn_type": "http", "host": url, "password": TOKEN}))
    yield emulator
    server.shutdown()
    server.server_close()
