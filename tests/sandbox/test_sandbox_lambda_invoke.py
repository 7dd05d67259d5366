"""invoke.lambda against the sandbox over HTTP: the operator invokes python functions the sandbox runs."""

from __future__ import annotations

import io
import json
import threading
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from include.sandbox import resources as r
from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.operators.lambda_invoke import LambdaFunctionFailed, LambdaInvokeOperator
from release_orchestrator.pipeline.preflight import PASS, Boto3Access, PlannedCheck, run_checks
from tests.unit.fakes import FakeTaskInstance

CONNECTION = "sandbox_lambda"
# Not the seeded artifact bucket: its uploads send S3 events that other tests read.
WRITES_BUCKET = "sandbox-lambda-writes"


class FakeTI(FakeTaskInstance):
    task_id = "Verify.CheckRelease"
    try_number = 1


@pytest.fixture
def connection(sandbox, monkeypatch):
    extra = {"endpoint_url": sandbox.url, "region_name": r.REGION}
    value = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONNECTION.upper()}", value)
    return CONNECTION


@pytest.fixture
def context():
    ti = FakeTI()
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id}


def invoke(function_name: str = r.RELEASE_CHECK_FUNCTION, **parameters) -> LambdaInvokeOperator:
    return LambdaInvokeOperator(
        task_id="check",
        function_name=function_name,
        user_parameters=parameters,
        aws_conn_id=CONNECTION,
        region_name=r.REGION,
    )


def test_returned_output_variables_become_outputs_and_the_log_reaches_the_task_log(connection, context, capsys):
    outputs = invoke(f"{r.RELEASE_CHECK_FUNCTION}:{r.LAMBDA_ALIAS}", service="webapp").execute(context)
    job_id = outputs.pop("JobId")
    assert outputs == {
        "FunctionName": f"{r.RELEASE_CHECK_FUNCTION}:{r.LAMBDA_ALIAS}",
        "ExecutedVersion": "1",  # the alias's version ran
        "StatusCode": "200",
        "Service": "webapp",
        "Version": "1",
    }
    printed = capsys.readouterr().out
    assert f"checking release for job {job_id} with {{'service': 'webapp'}}" in printed
    assert "START RequestId:" in printed and "REPORT RequestId:" in printed


def test_a_function_that_raises_fails_the_action_with_its_message(connection, context, capsys):
    with pytest.raises(LambdaFunctionFailed) as failure:
        invoke(fail="smoke test got HTTP 500 from /health").execute(context)
    assert str(failure.value) == (
        f"Invoke of function '{r.RELEASE_CHECK_FUNCTION}' failed: RuntimeError: smoke test got HTTP 500 from /health"
    )
    assert 'raise RuntimeError(parameters["fail"])' in capsys.readouterr().out  # the traceback, in the log tail


def test_a_returned_failure_fails_the_action_with_its_message(connection, context):
    with pytest.raises(LambdaFunctionFailed, match="reported a failure: 3 of 40 canaries failed"):
        invoke(report_failure="3 of 40 canaries failed").execute(context)


def test_a_function_past_its_timeout_fails_as_timed_out(connection, context, aws):
    name = f"release-check-slow-{uuid.uuid4().hex[:8]}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("slow.py", "import time\n\ndef handler(event, context):\n    time.sleep(30)\n")
    aws("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=r.SERVICE_ROLE_ARN,
        Handler="slow.handler",
        Code={"ZipFile": buffer.getvalue()},
        Timeout=1,
    )
    with pytest.raises(LambdaFunctionFailed, match=r"Sandbox.Timedout: .*Task timed out after 1.00 seconds"):
        invoke(name).execute(context)


def test_a_missing_function_fails_naming_the_call_and_the_function(connection, context):
    with pytest.raises(AwsCallError) as failure:
        invoke("release-check-missing").execute(context)
    assert str(failure.value).startswith(
        "Invoke on function 'release-check-missing' failed: ResourceNotFoundException: Function not found"
    )


def test_a_kill_abandons_the_wait_while_the_function_runs_to_its_end(connection, context, capsys, wait_until):
    task = invoke(sleep=0.3, service="slow")
    outputs = {}
    worker = threading.Thread(target=lambda: outputs.update(task.execute(context)))
    worker.start()
    wait_until(lambda: task._invoking, bool, timeout=10, interval=0.05)
    task.on_kill()
    worker.join(15)
    assert "abandoning the wait for its response" in capsys.readouterr().out
    # Lambda cannot stop an invocation: it ran to its end (here the test's thread still read the answer).
    assert outputs["Service"] == "slow"


def test_preflight_finds_the_function_and_its_alias(sandbox, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    checks = [
        PlannedCheck("Verify", "Check", "lambda_function", name, {}, r.REGION)
        for name in (r.RELEASE_CHECK_FUNCTION, f"{r.RELEASE_CHECK_FUNCTION}:{r.LAMBDA_ALIAS}", "release-check-nope")
    ]
    rows = run_checks(checks, Boto3Access(sandbox.url, r.REGION))
    assert [row.result for row in rows] == [PASS, PASS, "FAIL"]
    assert "GetFunction" in rows[2].reason and "release-check-nope" in rows[2].reason


def test_event_invocations_run_in_the_background_and_dry_runs_only_check(sandbox, aws, wait_until):
    """Raw Invoke calls: Event answers 202 and the function runs (it writes to the sandbox's S3); DryRun
    answers 204; a result that is not JSON is Lambda's Runtime.MarshalError."""
    name, key = f"release-check-event-{uuid.uuid4().hex[:8]}", f"events/{uuid.uuid4().hex}"
    code = (
        "import boto3\n\n"
        "def handler(event, context):\n"
        "    if event.get('set'):\n"
        "        return {1, 2}\n"
        f"    boto3.client('s3').put_object(Bucket='{WRITES_BUCKET}', Key=event['key'], Body=b'ran')\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("writer.py", code)
    lam, s3 = aws("lambda"), aws("s3")
    try:
        s3.create_bucket(Bucket=WRITES_BUCKET)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    environment = {"AWS_ENDPOINT_URL": sandbox.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "x"}
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=r.SERVICE_ROLE_ARN,
        Handler="writer.handler",
        Code={"ZipFile": buffer.getvalue()},
        Environment={"Variables": environment},
    )
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"key": key}))["StatusCode"] == 202
    listed = wait_until(lambda: s3.list_objects_v2(Bucket=WRITES_BUCKET, Prefix=key), lambda v: v.get("KeyCount"))
    assert listed["Contents"][0]["Key"] == key
    answer = lam.invoke(FunctionName=name, Payload=json.dumps({"set": True}))
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read()) == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError",
        "stackTrace": [],
    }
