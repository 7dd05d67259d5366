"""aws_call's error (call, resource, AWS error code) and the hooks' paginated list reads."""

from __future__ import annotations

from unittest import mock

import boto3
import pytest
from airflow.providers.common.compat.sdk import AirflowException
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from release_orchestrator.hooks.base import AwsCallError, aws_call
from release_orchestrator.hooks.codebuild import CodeBuildHook
from release_orchestrator.hooks.codedeploy import DEPLOYMENT_ACTIVE_STATES, CodeDeployHook

REGION = "us-east-1"


def client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "HeadObject")


def test_an_aws_error_names_the_call_and_the_resource_and_keeps_its_code():
    cause = client_error("AccessDenied", "not allowed")
    with pytest.raises(AwsCallError) as raised, aws_call("HeadObject", "s3://bucket/key"):
        raise cause
    err = raised.value
    assert isinstance(err, AirflowException)
    assert str(err) == "HeadObject on s3://bucket/key failed: AccessDenied: not allowed"
    assert (err.code, err.operation, err.resource) == ("AccessDenied", "HeadObject", "s3://bucket/key")
    assert err.__cause__ is cause and err.cause is cause


def test_an_unanswered_call_names_the_call_and_has_no_code():
    with pytest.raises(AwsCallError) as raised, aws_call("DescribeImages", "ecr repository 'webapp'"):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert raised.value.code is None
    assert str(raised.value).startswith("DescribeImages on ecr repository 'webapp' failed: EndpointConnectionError: ")


def test_other_errors_pass_through():
    with pytest.raises(KeyError), aws_call("GetAlias", "alias 'live'"):
        raise KeyError("FunctionVersion")


def stubbed(hook_class, service: str):
    """A hook whose client answers from a Stubber (activated), and the stubber."""
    client = boto3.client(service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    return mock.patch.object(hook_class, "conn", client), Stubber(client)


def test_test_cases_are_read_from_every_page():
    patch, stub = stubbed(CodeBuildHook, "codebuild")
    report = "arn:aws:codebuild:us-east-1:123456789012:report/webapp-tests:1"
    stub.add_response("describe_test_cases", {"testCases": [{"name": "a"}], "nextToken": "t1"}, {"reportArn": report})
    stub.add_response(
        "describe_test_cases", {"testCases": [{"name": "b"}, {"name": "c"}]}, {"reportArn": report, "nextToken": "t1"}
    )
    with patch, stub:
        assert [case["name"] for case in CodeBuildHook().get_test_cases(report)] == ["a", "b", "c"]
    stub.assert_no_pending_responses()


def test_deployment_targets_are_listed_from_every_page():
    patch, stub = stubbed(CodeDeployHook, "codedeploy")
    stub.add_response("list_deployment_targets", {"targetIds": ["i-1"], "nextToken": "t1"}, {"deploymentId": "d-1"})
    stub.add_response("list_deployment_targets", {"targetIds": ["i-2"]}, {"deploymentId": "d-1", "nextToken": "t1"})
    targets = [{"deploymentTargetType": "InstanceTarget"}] * 2
    stub.add_response(
        "batch_get_deployment_targets",
        {"deploymentTargets": targets},
        {"deploymentId": "d-1", "targetIds": ["i-1", "i-2"]},
    )
    with patch, stub:
        assert len(CodeDeployHook().get_deployment_targets("d-1")) == 2
    stub.assert_no_pending_responses()


def test_active_deployments_are_listed_from_every_page():
    patch, stub = stubbed(CodeDeployHook, "codedeploy")
    wanted = {
        "applicationName": "webapp",
        "deploymentGroupName": "production",
        "includeOnlyStatuses": list(DEPLOYMENT_ACTIVE_STATES),
    }
    stub.add_response("list_deployments", {"deployments": ["d-1"], "nextToken": "t1"}, wanted)
    stub.add_response("list_deployments", {"deployments": ["d-2"]}, {**wanted, "nextToken": "t1"})
    found = [{"deploymentId": "d-1", "description": "other"}, {"deploymentId": "d-2", "description": "run m-1"}]
    with patch, stub, mock.patch.object(CodeDeployHook, "batch_get_deployments", return_value=found) as batch:
        assert CodeDeployHook().find_active_deployment("webapp", "production", "m-1") == "d-2"
    batch.assert_called_once_with(["d-1", "d-2"])


def test_a_failing_page_raises_the_named_error():
    patch, stub = stubbed(CodeDeployHook, "codedeploy")
    stub.add_client_error(
        "list_deployment_targets", service_error_code="DeploymentDoesNotExistException", service_message="no d-9"
    )
    with patch, stub, pytest.raises(AwsCallError, match="ListDeploymentTargets on deployment 'd-9' failed") as err:
        CodeDeployHook().get_deployment_targets("d-9")
    assert err.value.code == "DeploymentDoesNotExistException"
