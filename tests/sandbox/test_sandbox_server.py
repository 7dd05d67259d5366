"""The sandbox process itself: control endpoints, seeding twice, a taken port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from include.sandbox import resources as r
from include.sandbox.client import SandboxClient, SandboxError
from include.sandbox.seed import seed
from include.sandbox.server import PortInUseError, start_sandbox

ROOT = Path(__file__).resolve().parents[2]


def test_health_and_fault_document(control):
    health = control.health()
    assert health["status"] == "ok" and health["seeded"] is True
    document = control.set_faults(
        {
            "codebuild": {r.BUILD_PROJECT: {"mode": "fail"}},
            "codedeploy": {f"{r.ECS_APPLICATION}/{r.ECS_GROUP}": {"mode": "throttle"}},
        }
    )
    assert document["codebuild"][r.BUILD_PROJECT] == {"mode": "fail"}
    assert document["codedeploy"][f"{r.ECS_APPLICATION}/{r.ECS_GROUP}"] == {"mode": "throttle", "rate": 0.5}
    assert control.clear_fault("codebuild", r.BUILD_PROJECT)["codebuild"] == {}
    assert control.clear_faults() == {
        "codebuild": {},
        "codedeploy": {},
        "elasticbeanstalk": {},
        "cloudformation": {},
        "ecs": {},
    }
    with pytest.raises(SandboxError, match="mode must be one of"):
        control.set_fault("codedeploy", r.ECS_APPLICATION, "fail-tests")
    with pytest.raises(SandboxError, match="mode must be one of"):
        control.set_fault("cloudformation", "webapp-stack", "throttle")
    with pytest.raises(SandboxError, match="HTTP 404"):
        control._call("GET", "/_sandbox/nothing")
    with pytest.raises(SandboxError, match="times counts CodeBuild builds"):
        control.set_fault("codebuild", r.BUILD_PROJECT, "throttle", times=2)
    with pytest.raises(SandboxError, match="times must be a whole number"):
        control.set_fault("codebuild", r.BUILD_PROJECT, "fail", times=0)


def test_seeding_twice_changes_nothing(sandbox, aws):
    def inventory() -> dict:
        return {
            "versions": len(aws("lambda").list_versions_by_function(FunctionName=r.LAMBDA_FUNCTION)["Versions"]),
            "versions_eu": len(
                aws("lambda", r.SECOND_REGION).list_versions_by_function(FunctionName=r.LAMBDA_FUNCTION)["Versions"]
            ),
            "task_definitions": len(
                aws("ecs").list_task_definitions(familyPrefix=r.ECS_TASK_FAMILY)["taskDefinitionArns"]
            ),
            "subscriptions": len(aws("sns").list_subscriptions_by_topic(TopicArn=r.SNS_TOPIC_ARN)["Subscriptions"]),
            "groups": sorted(
                aws("codedeploy").list_deployment_groups(applicationName=r.EC2_APPLICATION)["deploymentGroups"]
            ),
            "projects": sorted(aws("codebuild").list_projects()["projects"]),
        }

    before = inventory()
    seed(sandbox.url)
    assert inventory() == before
    assert before["groups"] == sorted([r.EC2_STAGING_GROUP, r.EC2_PRODUCTION_GROUP])
    assert {r.BUILD_PROJECT, r.TEST_PROJECT} <= set(before["projects"])


def test_notifications_reach_the_inbox(aws):
    aws("sns").publish(TopicArn=r.SNS_TOPIC_ARN, Message="release started")
    sqs = aws("sqs")
    queue_url = sqs.get_queue_url(QueueName=r.INBOX_QUEUE)["QueueUrl"]
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]]
    assert any("release started" in body for body in bodies)


def test_taken_port_fails_at_once(sandbox):
    started = time.monotonic()
    with pytest.raises(PortInUseError, match=str(sandbox.port)):
        start_sandbox(port=sandbox.port)
    assert time.monotonic() - started < 2

    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}"}
    result = subprocess.run(
        [sys.executable, "-m", "include.sandbox.server", "--port", str(sandbox.port)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"port {sandbox.port}" in result.stderr


def test_reset_forgets_builds_and_faults(aws):
    with start_sandbox(port=0, build_seconds=1, deploy_seconds=1) as other:
        client = SandboxClient(other.url)
        client.wait_ready(timeout=5)
        seed(other.url)
        client.set_fault("codebuild", r.BUILD_PROJECT, "hang")
        codebuild = boto3.client(
            "codebuild",
            endpoint_url=other.url,
            region_name=r.REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        build_id = codebuild.start_build(projectName=r.BUILD_PROJECT)["build"]["id"]
        assert client.health()["builds"] == 1
        client.reset()
        assert client.health()["builds"] == 0
        assert client.faults() == {
            "codebuild": {},
            "codedeploy": {},
            "elasticbeanstalk": {},
            "cloudformation": {},
            "ecs": {},
        }
        assert codebuild.batch_get_builds(ids=[build_id])["buildsNotFound"] == [build_id]
