"""Helpers for integration tests: AWS clients on the sandbox, the SNS inbox, waiting for runs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import boto3

from include.localenv.airflow_api import AirflowAPI
from include.localenv.environment import LocalEnvironment
from include.sandbox import resources

TEST_PIPELINES = Path(__file__).parent / "pipelines"
REPO_ROOT = Path(__file__).resolve().parents[2]
# The shortest approval timeout the integration environment lets specs set (ap-timeout.yaml runs out in seconds).
APPROVAL_TIMEOUT_MIN_SECONDS = 10


def aws_client(env: LocalEnvironment, service: str, region: str = resources.REGION):
    return boto3.client(
        service,
        endpoint_url=env.sandbox_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class Inbox:
    """The SQS queue subscribed to the sandbox's SNS topic: what the pipelines published."""

    def __init__(self, env: LocalEnvironment):
        self.sqs = aws_client(env, "sqs")
        self.sns = aws_client(env, "sns")
        self.url = self.sqs.get_queue_url(QueueName=resources.INBOX_QUEUE)["QueueUrl"]

    def read_published(self, timeout: float = 30) -> list[dict]:
        """Every message published to the topic up to now: publishes a marker of its own and reads until the
        marker arrives (the sandbox's SNS delivers to the queue in order, as it publishes), so no quiet time
        decides what was published."""
        marker = f"inbox-marker-{uuid.uuid4()}"
        self.sns.publish(TopicArn=resources.SNS_TOPIC_ARN, Subject=marker, Message=json.dumps({"marker": marker}))
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = self._receive()  # deleted from the queue: keep all of it, also what came after the marker
            messages += [m for m in batch if not str(m.get("Subject", "")).startswith("inbox-marker-")]
            if any(m.get("Subject") == marker for m in batch):
                return messages
        raise AssertionError(f"the inbox marker did not arrive within {timeout:.0f}s")

    def _receive(self) -> list[dict]:
        batch = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = []
        for message in batch.get("Messages", []):
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            envelope = json.loads(message["Body"])
            envelope["parsed"] = json.loads(envelope["Message"])
            messages.append(envelope)
        return messages

    def drain(self, until: tuple[str, ...] = (), timeout: float = 60) -> list[dict]:
        """Every message published up to now; with `until`, up to the moment a message whose subject starts with
        one of those prefixes arrived (waiting up to `timeout` for it: pipeline-level messages come from DAG
        callbacks that run after the run ends)."""
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        while until and not any(m.get("Subject", "").startswith(until) for m in messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"no message starting with {until} within {timeout:.0f}s: {messages}")
            messages += self._receive()
        return messages + self.read_published()

    def listen(self, seconds: float) -> list[dict]:
        """Every message arriving in the next `seconds`: a window for late duplicates to show up in, for tests
        that look for them (nothing expected arrives in it)."""
        messages: list[dict] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            messages += self._receive()
        return messages + self.read_published()


def put_alarm(cloudwatch, name: str, state: str) -> None:
    """A CloudWatch metric alarm in `state` (OK, ALARM, INSUFFICIENT_DATA), for entry conditions to read."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="5xx",
        Namespace="webapp",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")


def create_build_project(codebuild, name: str, repository: str, buildspec: str) -> None:
    """A CodeBuild project on the sandbox building `repository` (owner/name on GitHub), without artifacts."""
    codebuild.create_project(
        name=name,
        source={"type": "GITHUB", "location": f"https://github.com/{repository}.git", "buildspec": buildspec},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        serviceRole=resources.SERVICE_ROLE_ARN,
        timeoutInMinutes=30,
    )


def task_log(
    api: AirflowAPI, dag_id: str, run_id: str, task_id: str, try_number: int = 1, containing: tuple[str, ...] = ()
) -> str:
    """A try's log; with `containing`, once it holds all of those or after 30 s (the lines the triggerer logs
    reach the log a moment after the task's state changed), for the caller's assertions to judge."""
    deadline = time.monotonic() + 30
    while True:
        log = api.task_log(dag_id, run_id, task_id, try_number)
        if all(text in log for text in containing) or time.monotonic() > deadline:
            return log
        time.sleep(0.5)


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for_run(api: AirflowAPI, dag_id: str, run_id: str, timeout: float = 300) -> dict:
    return wait_for(
        lambda: (run := api.get_run(dag_id, run_id))["state"] in ("success", "failed") and run,
        timeout,
        what=f"run {run_id} of {dag_id} to finish",
    )


def wait_for_task_state(
    api: AirflowAPI, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 180
) -> dict:
    def check():
        for ti in api.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["state"] in states:
                return ti
        return None

    return wait_for(check, timeout, what=f"{task_id} in {states}")


def approve_in_turn(api: AirflowAPI, reviewer: AirflowAPI, dag_id: str, run_id: str, task_ids, note: str) -> None:
    """Mark approvals success one after the other as `reviewer`, each once it waits for a decision (deferred):
    the next one starts only when the one before is decided, and the gate refuses an approval not waiting."""
    for task_id in task_ids:
        wait_for_task_state(api, dag_id, run_id, task_id, {"deferred"}, timeout=120)
        reviewer.set_task_state(dag_id, run_id, task_id, "success", note=note)


def ti_states(api: AirflowAPI, dag_id: str, run_id: str) -> dict[str, str | None]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(dag_id, run_id)}


class Mailbox:
    """Every message of the session's SNS inbox since a module started, by pipeline and run."""

    def __init__(self, inbox: Inbox):
        self.inbox = inbox
        self.messages: list[dict] = []

    def collect(self) -> None:
        self.messages += self.inbox.read_published()

    def of(self, pipeline: str, run_id: str, prefix: str = "") -> list[dict]:
        """The messages about one run so far whose subject starts with `prefix`."""
        self.collect()
        return [
            m for m in self.messages if self.where(m) == (pipeline, run_id) and m.get("Subject", "").startswith(prefix)
        ]

    def wait(self, pipeline: str, run_id: str, prefix: str, timeout: float = 120) -> list[dict]:
        return wait_for(
            lambda: self.of(pipeline, run_id, prefix),
            timeout,
            interval=1,
            what=f"a '{prefix}' message of {pipeline} run {run_id}",
        )

    @staticmethod
    def where(message: dict) -> tuple[str | None, str | None]:
        """(pipeline, run id) a message is about."""
        body = message["parsed"]
        if "approval" in body and "token" in body["approval"]:  # CodePipeline's approval JSON
            pipeline, run_id, _ = body["approval"]["token"].split("/", 2)
            return pipeline, run_id
        detail = body.get("detail", {})
        return detail.get("pipeline"), detail.get("execution-id")


def console_command(env: LocalEnvironment, user: str, *arguments: str) -> subprocess.CompletedProcess:
    """`python -m release_orchestrator <arguments>` against the environment's api-server, as `user`."""
    return subprocess.run(
        [sys.executable, "-m", "release_orchestrator", *arguments, "--airflow-url", env.airflow_url],
        env={
            **os.environ,
            "PYTHONPATH": f"{REPO_ROOT / 'plugins'}{os.pathsep}{REPO_ROOT}",
            "AIRFLOW_USER": user,
            "AIRFLOW_PASSWORD": env.users[user],
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def function_zip(marker: str) -> bytes:
    """A Lambda function's code (a zip) whose handler returns `marker`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", f"def handler(event, context):\n    return {marker!r}\n")
    return buffer.getvalue()


def code_sha256(code: bytes) -> str:
    """Lambda's CodeSha256 of a function's code."""
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


def function_behind_alias(env: LocalEnvironment, name: str):
    """A function of a test's own in the second region, version 1 behind alias `live`; its Lambda client."""
    functions = aws_client(env, "lambda", resources.SECOND_REGION)
    functions.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=resources.SERVICE_ROLE_ARN,
        Handler="handler.handler",
        Code={"ZipFile": function_zip("first")},
        Publish=True,
    )
    functions.create_alias(FunctionName=name, Name=resources.LAMBDA_ALIAS, FunctionVersion="1")
    return functions


def topic_inbox(env, topic_name: str):
    """A topic of a test pipeline's own, with a queue subscribed: tests reading the shared inbox never see its
    messages. Returns `read(until, timeout=120)`: every message up to the one whose subject starts with `until`,
    and what comes in 1.5 s after it (a late duplicate would show up then)."""
    sns, sqs = aws_client(env, "sns"), aws_client(env, "sqs")
    topic = sns.create_topic(Name=topic_name)["TopicArn"]
    assert topic == f"arn:aws:sns:{resources.REGION}:{resources.ACCOUNT_ID}:{topic_name}"
    queue = sqs.create_queue(QueueName=f"{topic_name}-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def read(until: str, timeout: float = 120) -> list[dict]:
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
                quiet_until = time.monotonic() + 1.5
        return messages

    return read


def event_of(envelope: dict) -> tuple[str, ...]:
    """(level, state, stage.action) of a message, from its CodePipeline-shaped body."""
    event = json.loads(envelope["Message"])
    detail = event["detail"]
    level = event["detail-type"].removeprefix("CodePipeline ").split()[0].lower()
    where = ".".join(part for part in (detail.get("stage"), detail.get("action")) if part)
    return (level, detail["state"], where) if where else (level, detail["state"])
