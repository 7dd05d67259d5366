import json
import threading

import boto3
import pytest
from moto import mock_aws

from tests.unit.fakes import FakeStateStore, FakeTaskInstance, task_context

REGION = "us-east-1"


def sandbox_client(sb, service: str):
    """A boto3 client of the running sandbox `sb`."""
    from include.sandbox.common import client

    return client(service, sb.url)


@pytest.fixture(scope="module")
def sandbox():
    """The sandbox over real HTTP in this process (include/sandbox/server.py), with the versioned artifact
    bucket, an ECR and a CodeCommit repository named events-test, and the source events queue. moto's state is
    the process's: a module's sandbox may find what an earlier one made."""
    from botocore.exceptions import ClientError

    from include.sandbox import resources
    from include.sandbox.events import seed_events
    from include.sandbox.server import start_sandbox

    with start_sandbox(port=0) as sb:
        s3 = sandbox_client(sb, "s3")
        s3.create_bucket(Bucket=resources.ARTIFACT_BUCKET)
        s3.put_bucket_versioning(Bucket=resources.ARTIFACT_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for service in ("ecr", "codecommit"):
            try:
                sandbox_client(sb, service).create_repository(repositoryName="events-test")
            except ClientError as error:
                exists = ("RepositoryAlreadyExistsException", "RepositoryNameExistsException")
                assert error.response["Error"]["Code"] in exists
        sb.queue_url = seed_events(sb.url)
        assert seed_events(sb.url) == sb.queue_url  # idempotent
        yield sb


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


@pytest.fixture
def sdk_xcoms(monkeypatch):
    """XCom through the Task SDK (the triggerer's), kept in a dict by (task id, key)."""
    store = {}

    class FakeXCom:
        @staticmethod
        def get_one(key, dag_id, task_id, run_id, map_index):
            return store.get((task_id, key))

        @staticmethod
        def set(key, value, dag_id, task_id, run_id, map_index):
            store[(task_id, key)] = value

    monkeypatch.setattr("airflow.sdk.execution_time.xcom.XCom", FakeXCom)
    return store
