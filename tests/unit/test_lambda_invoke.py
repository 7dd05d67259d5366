"""invoke.lambda: the Invoke request, outputs from the function's answer, failures, kill, validation."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
import yaml
from botocore.response import StreamingBody

from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.links import LambdaFunctionLink
from release_orchestrator.operators.lambda_invoke import LambdaFunctionFailed, LambdaInvokeOperator
from release_orchestrator.pipeline.loader import parse_spec_text
from tests.unit.fakes import FakeTaskInstance


class FakeTI(FakeTaskInstance):
    task_id = "Check.Release"
    try_number = 1


@pytest.fixture(autouse=True)
def aws(moto_aws):
    """moto, and the Airflow connection the operator uses."""


@pytest.fixture
def context():
    ti = FakeTI()
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id}


def answer(payload, function_error=None, log=None, version="3"):
    """What boto3's Invoke returns."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = {"StatusCode": 200, "ExecutedVersion": version, "Payload": StreamingBody(io.BytesIO(data), len(data))}
    if function_error:
        response["FunctionError"] = function_error
    if log is not None:
        response["LogResult"] = base64.b64encode(log.encode()).decode()
    return response


@pytest.fixture
def invoke(monkeypatch):
    """Replaces LambdaHook.invoke_lambda: records each call's arguments, answers with `invoke.response`."""

    class Recorder:
        calls: list = []
        response: dict = {}

        def __call__(self, hook, **kwargs):
            self.calls.append(kwargs)
            return self.response

    recorder = Recorder()
    recorder.calls = []
    monkeypatch.setattr(
        "airflow.providers.amazon.aws.hooks.lambda_function.LambdaHook.invoke_lambda",
        lambda hook, **kwargs: recorder(hook, **kwargs),
    )
    return recorder


def operator(**kwargs):
    kwargs.setdefault("task_id", "invoke")
    kwargs.setdefault("function_name", "release-check:live")
    return LambdaInvokeOperator(**kwargs)


def test_invokes_synchronously_with_a_codepipeline_job_event(invoke, context, capsys):
    invoke.response = answer(
        {"outputVariables": {"Service": "webapp", "Healthy": True, "Checks": 12}},
        log="START RequestId: r\nchecked 12 things\nEND RequestId: r\n",
    )
    outputs = operator(user_parameters={"service": "webapp"}).execute(context)

    [call] = invoke.calls
    assert call["function_name"] == "release-check:live"
    assert call["invocation_type"] == "RequestResponse" and call["log_type"] == "Tail"
    event = json.loads(call["payload"])
    job = event["CodePipeline.job"]
    assert job["data"]["actionConfiguration"]["configuration"] == {
        "FunctionName": "release-check:live",
        "UserParameters": '{"service": "webapp"}',
    }
    assert job["data"]["inputArtifacts"] == [] and job["data"]["outputArtifacts"] == []
    assert outputs == {
        "FunctionName": "release-check:live",
        "ExecutedVersion": "3",
        "StatusCode": "200",
        "Service": "webapp",
        "Healthy": "true",
        "Checks": "12",
    }
    assert "checked 12 things" in capsys.readouterr().out  # the log tail reaches the task log
    link = context["ti"].xcom["_lambda_function"]
    assert LambdaFunctionLink().format_link(**link) == (
        "https://console.aws.amazon.com/lambda/home?region=us-east-1#/functions/release-check"
    )


def test_the_job_id_is_stable_within_a_try_and_new_for_the_next(invoke, context):
    invoke.response = answer(None)
    operator(user_parameters="plain text").execute(context)
    invoke.response = answer(None)
    operator(user_parameters="plain text").execute(context)
    context["ti"].try_number = 2
    invoke.response = answer(None)
    outputs = operator().execute(context)
    ids = [json.loads(c["payload"])["CodePipeline.job"]["id"] for c in invoke.calls]
    assert ids[0] == ids[1] != ids[2]
    assert len(ids[0]) == 36  # a UUID, as CodePipeline's job ids are
    assert json.loads(invoke.calls[0]["payload"])["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"][
        "UserParameters"
    ] == ("plain text")
    assert (
        "UserParameters"
        not in json.loads(invoke.calls[2]["payload"])["CodePipeline.job"]["data"]["actionConfiguration"][
            "configuration"
        ]
    )
    assert outputs["StatusCode"] == "200"  # a function returning nothing succeeds with no variables


def test_a_function_error_fails_with_the_functions_message(invoke, context):
    invoke.response = answer(
        {"errorMessage": "no healthy hosts", "errorType": "RuntimeError", "stackTrace": []},
        function_error="Unhandled",
    )
    with pytest.raises(LambdaFunctionFailed) as failure:
        operator().execute(context)
    assert str(failure.value) == "Invoke of function 'release-check:live' failed: RuntimeError: no healthy hosts"


def test_a_returned_failed_status_fails_with_its_message(invoke, context):
    invoke.response = answer({"status": "failed", "message": "error rate 7% over budget"})
    with pytest.raises(LambdaFunctionFailed, match="reported a failure: error rate 7% over budget"):
        operator().execute(context)


@pytest.mark.parametrize(
    "variables, message",
    [
        (["a"], "returned outputVariables as list, expected a mapping"),
        ({"Hosts": ["a", "b"]}, "output variable 'Hosts' as list, expected a string"),
        ({"StatusCode": "0"}, "output variable 'StatusCode', which the action sets itself"),
    ],
)
def test_unusable_output_variables_fail_naming_them(invoke, context, variables, message):
    invoke.response = answer({"outputVariables": variables})
    with pytest.raises(LambdaFunctionFailed, match=message):
        operator().execute(context)


def test_an_aws_error_names_the_call_and_the_function(context):
    with pytest.raises(AwsCallError) as failure:
        operator(function_name="no-such-function").execute(context)
    assert str(failure.value).startswith("Invoke on function 'no-such-function' failed: ResourceNotFoundException")


def test_the_client_waits_as_long_as_a_function_may_run_and_never_retries_an_invoke():
    config = operator().hook.conn.meta.config
    assert config.read_timeout >= 900
    assert config.retries["total_max_attempts"] == 1
    assert operator(botocore_config={"read_timeout": 60}).hook.conn.meta.config.read_timeout == 60


def test_kill_while_invoking_abandons_the_wait_and_says_so(monkeypatch, context, capsys):
    entered, release = threading.Event(), threading.Event()

    def slow_invoke(hook, **kwargs):
        entered.set()
        release.wait(10)
        return answer(None)

    monkeypatch.setattr("airflow.providers.amazon.aws.hooks.lambda_function.LambdaHook.invoke_lambda", slow_invoke)
    task = operator()
    task.on_kill()  # not invoking yet: nothing to say
    assert "abandoning" not in capsys.readouterr().out
    worker = threading.Thread(target=task.execute, args=(context,))
    worker.start()
    assert entered.wait(10)
    task.on_kill()
    release.set()
    worker.join(10)
    printed = capsys.readouterr().out
    assert "abandoning the wait for its response" in printed and "keeps running at AWS" in printed


def spec(configuration: dict) -> str:
    action = {"name": "CheckRelease", "type": "invoke.lambda", "configuration": configuration}
    return yaml.safe_dump({"pipeline": {"name": "p", "stages": [{"name": "Verify", "actions": [action]}]}})


@pytest.mark.parametrize(
    "name",
    ["release-check", "release-check:live", "release-check:7", "arn:aws:lambda:us-east-1:123456789012:function:f:2"],
)
def test_function_names_lambda_accepts_validate(name):
    _, errors = parse_spec_text(spec({"function_name": name, "user_parameters": {"a": 1}}))
    assert errors == []


def test_a_malformed_function_name_is_an_error_on_its_field():
    _, errors = parse_spec_text(spec({"function_name": "release check"}), "x.yaml")
    [error] = errors
    assert (error.stage, error.action, error.field) == ("Verify", "CheckRelease", "configuration.function_name")
    assert "expected a function name" in error.message


def test_references_to_returned_variables_are_allowed():
    text = yaml.safe_dump(
        {
            "pipeline": {
                "name": "p",
                "stages": [
                    {
                        "name": "Verify",
                        "actions": [
                            {
                                "name": "CheckRelease",
                                "type": "invoke.lambda",
                                "namespace": "Check",
                                "configuration": {"function_name": "release-check"},
                            },
                            {
                                "name": "Approve",
                                "type": "approval.manual",
                                "run_order": 2,
                                "configuration": {"custom_data": "#{Check.Service} #{Check.ExecutedVersion}"},
                            },
                        ],
                    }
                ],
            }
        }
    )
    assert parse_spec_text(text)[1] == []
