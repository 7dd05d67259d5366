"""`python -m release_orchestrator check` against the seeded sandbox: the example passes; a misspelled
CodeBuild project, a deployment group on another compute platform and a missing SNS topic each fail, with
the AWS call named; the Preflight.Check task makes the same checks through an Airflow connection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from include.sandbox import resources as r
from release_orchestrator.pipeline.loader import load_spec
from release_orchestrator.pipeline.preflight import FAIL, PASS, SKIPPED_REFERENCE, Boto3Access, plan, run_checks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "include" / "pipelines" / "webapp-release.yaml"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def cli(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}", **CREDENTIALS, **(env or {})}
    command = [sys.executable, "-m", "release_orchestrator", *arguments]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def check_rows(sandbox, path: Path, monkeypatch) -> list:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return run_checks(plan(load_spec(path), region=r.REGION), Boto3Access(sandbox.url, r.REGION))


def by_resource(rows) -> dict:
    return {row.resource: row for row in rows}


def test_check_passes_on_the_seeded_example_as_a_subprocess(sandbox):
    done = cli("check", str(EXAMPLE), "--endpoint-url", sandbox.url, "--region", r.REGION, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [report] = json.loads(done.stdout)
    assert report["ok"] and report["failed"] == 0
    rows = {(row["stage"], row["action"], row["resource"]): row["result"] for row in report["checks"]}
    assert rows == {
        ("-", "-", "credentials (boto3 credentials)"): PASS,
        ("Build", "Compile", f"codebuild project webapp-build ({r.REGION})"): PASS,
        ("Test", "DeployStaging", f"codedeploy group webapp-ec2/staging ({r.REGION})"): PASS,
        ("Test", "IntegrationTests", f"codebuild project webapp-integration-tests ({r.REGION})"): PASS,
        ("Deploy", "EC2", f"codedeploy group webapp-ec2/production ({r.REGION})"): PASS,
        ("Deploy", "ECS", f"codedeploy group webapp-ecs/production ({r.REGION})"): PASS,
        ("Deploy", "Lambda", f"codedeploy group webapp-lambda/production ({r.SECOND_REGION})"): PASS,
        ("Deploy", "Lambda", f"lambda function webapp-api:live ({r.SECOND_REGION})"): PASS,
        ("-", "notifications", f"sns topic {r.SNS_TOPIC_ARN}"): PASS,
        ("-", "artifact_store", "s3 bucket release-artifacts"): PASS,  # the deployments' revisions are there
        ("-", "artifact_store", "s3 bucket release-artifacts-eu-west-1"): PASS,  # the Lambda deployment's copy
    }

    table = cli("check", str(EXAMPLE), "--endpoint-url", sandbox.url, "--region", r.REGION)
    assert table.returncode == 0, table.stderr
    assert "11 passed, 0 failed, 0 skipped (reference)" in table.stdout


MISSPELLED_PROJECT = """
pipeline:
  name: preflight-misspelled
  stages:
    - name: Build
      actions:
        - name: Compile
          type: build.codebuild
          configuration:
            project_name: webapp-biuld
"""


def test_check_finds_a_misspelled_codebuild_project(sandbox, tmp_path):
    done = cli("check", str(spec(tmp_path, MISSPELLED_PROJECT)), "--endpoint-url", sandbox.url, "--region", r.REGION)
    assert done.returncode == 1, done.stdout + done.stderr
    [row] = [re.split(r"\s{2,}", line) for line in done.stdout.splitlines() if "webapp-biuld" in line]
    assert row == [
        "Build",
        "Compile",
        f"codebuild project webapp-biuld ({r.REGION})",
        FAIL,
        "BatchGetProjects: no project 'webapp-biuld' (did you mean 'webapp-build'?)",
    ]
    assert "1 failed" in done.stdout


WRONG_PLATFORM = """
pipeline:
  name: preflight-platform
  stages:
    - name: Deploy
      actions:
        - name: Lambda
          type: deploy.codedeploy
          configuration:
            application_name: webapp-ecs
            deployment_group_name: production
            platform: lambda
            function_name: webapp-api
            alias: live
            target_version: "2"
"""


def test_check_finds_a_deployment_group_on_another_compute_platform(sandbox, tmp_path, monkeypatch):
    rows = by_resource(check_rows(sandbox, spec(tmp_path, WRONG_PLATFORM), monkeypatch))
    group = rows[f"codedeploy group webapp-ecs/production ({r.REGION})"]
    assert (group.stage, group.action, group.result) == ("Deploy", "Lambda", FAIL)
    assert group.reason == (
        "GetApplication: application 'webapp-ecs' is on compute platform ECS, the action says platform lambda (Lambda)"
    )
    assert rows[f"lambda function webapp-api:live ({r.REGION})"].result == PASS


DEPLOYMENT_CONFIGS = f"""
pipeline:
  name: preflight-configs
  stages:
    - name: Deploy
      actions:
        - name: Ecs
          type: deploy.codedeploy
          configuration:
            application_name: {r.ECS_APPLICATION}
            deployment_group_name: {r.ECS_GROUP}
            platform: ecs
            deployment_config_name: CodeDeployDefault.LambdaAllAtOnce
            task_definition_template: {{family: web, containerDefinitions: [{{name: web, image: x}}]}}
            container_name: web
            container_port: 8080
            image: web:1
        - name: Ec2
          type: deploy.codedeploy
          configuration:
            application_name: {r.EC2_APPLICATION}
            deployment_group_name: {r.EC2_STAGING_GROUP}
            deployment_config_name: CodeDeployDefault.HalfAtATime
            revision_s3_bucket: {r.ARTIFACT_BUCKET}
            revision_s3_key: app.zip
        - name: Typo
          type: deploy.codedeploy
          configuration:
            application_name: {r.EC2_APPLICATION}
            deployment_group_name: {r.EC2_PRODUCTION_GROUP}
            deployment_config_name: CodeDeployDefault.HalfAtATim
            revision_s3_bucket: {r.ARTIFACT_BUCKET}
            revision_s3_key: app.zip
"""


def test_check_finds_a_deployment_configuration_of_another_platform_or_missing(sandbox, tmp_path, monkeypatch):
    rows = {
        row.action: row
        for row in check_rows(sandbox, spec(tmp_path, DEPLOYMENT_CONFIGS), monkeypatch)
        if row.resource.startswith("codedeploy group")
    }
    assert (rows["Ecs"].result, rows["Ec2"].result, rows["Typo"].result) == (FAIL, PASS, FAIL)
    assert rows["Ecs"].reason == (
        "GetDeploymentConfig: deployment configuration 'CodeDeployDefault.LambdaAllAtOnce' is on compute "
        "platform Lambda, the action says platform ecs (ECS)"
    )
    assert rows["Ec2"].reason.endswith("CodeDeployDefault.HalfAtATime")
    assert rows["Typo"].reason.startswith(
        "GetDeploymentConfig on deployment configuration 'CodeDeployDefault.HalfAtATim' failed: "
        "DeploymentConfigDoesNotExistException"
    )


MISSING_TOPIC = """
pipeline:
  name: preflight-topic
  notifications:
    topic_arn: arn:aws:sns:us-east-1:123456789012:release-notifications-typo
  stages:
    - name: Approval
      actions:
        - name: SignOff
          type: approval.manual
          configuration:
            sns_topic_arn: arn:aws:sns:us-east-1:123456789012:release-notifications
        - name: Ecr
          type: source.ecr
          configuration:
            repository: "#{variables.repo}"
  variables:
    - name: repo
      default: webapp
"""


def test_check_finds_a_missing_sns_topic_and_skips_references(sandbox, tmp_path, monkeypatch):
    rows = by_resource(check_rows(sandbox, spec(tmp_path, MISSING_TOPIC), monkeypatch))
    missing = rows["sns topic arn:aws:sns:us-east-1:123456789012:release-notifications-typo"]
    assert (missing.stage, missing.action, missing.result) == ("-", "notifications", FAIL)
    assert missing.reason.startswith("GetTopicAttributes on topic 'arn:aws:sns:us-east-1:123456789012:")
    assert "NotFound" in missing.reason
    assert rows[f"sns topic {r.SNS_TOPIC_ARN}"].result == PASS
    assert rows[f"ecr repository #{{variables.repo}} ({r.REGION})"].result == SKIPPED_REFERENCE


@pytest.fixture
def connection(sandbox, monkeypatch):
    """An Airflow connection on the sandbox that assumes a role, as a cross-account connection does."""
    extra = {
        "endpoint_url": sandbox.url,
        "region_name": r.REGION,
        "role_arn": r.SERVICE_ROLE_ARN,
        # The provider assumes roles on STS's own endpoint unless service_config names another.
        "service_config": {"sts": {"endpoint_url": sandbox.url}},
    }
    value = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})
    monkeypatch.setenv("AIRFLOW_CONN_PREFLIGHT_SANDBOX", value)
    return "preflight_sandbox"


def test_check_through_an_airflow_connection_assumes_its_role(sandbox, connection):
    done = cli("check", str(EXAMPLE), "--aws-conn-id", connection, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [report] = json.loads(done.stdout)
    credentials = report["checks"][0]
    assert credentials["resource"] == f"credentials (connection {connection}, role {r.SERVICE_ROLE_ARN})"
    assert credentials["result"] == PASS
    assert "assumed" in credentials["reason"]


def test_preflight_task_fails_the_run_with_the_table(sandbox, tmp_path, connection):
    from airflow.sdk.exceptions import AirflowFailException

    from release_orchestrator.pipeline.compiler import build_dag

    text = WRONG_PLATFORM.replace("  stages:", f"  preflight: true\n  aws_conn_id: {connection}\n  stages:")
    dag = build_dag(load_spec(spec(tmp_path, text)))
    task = dag.get_task("Preflight.Check")
    with pytest.raises(AirflowFailException) as failure:
        task.execute(context={})
    message = str(failure.value)
    assert message.startswith("Preflight found 1 problem(s):")
    assert "GetApplication: application 'webapp-ecs' is on compute platform ECS" in message
    assert f"credentials (connection {connection}, role {r.SERVICE_ROLE_ARN})" in message

    passing = build_dag(
        load_spec(
            spec(
                tmp_path,
                MISSPELLED_PROJECT.replace("biuld", "build").replace(
                    "  stages:", f"  preflight: true\n  aws_conn_id: {connection}\n  stages:"
                ),
            )
        )
    )
    assert passing.get_task("Preflight.Check").execute(context={}) == {"Passed": 2, "Failed": 0, "Skipped": 0}


# The seeded application, environment and state machine.
BEANSTALK_AND_STEPFUNCTIONS = ROOT / "tests" / "unit" / "fixtures" / "specs" / "beanstalk-and-stepfunctions.yaml"


def test_check_finds_state_machines_and_beanstalk_environments(sandbox, tmp_path, monkeypatch):
    rows = by_resource(check_rows(sandbox, BEANSTALK_AND_STEPFUNCTIONS, monkeypatch))
    environment = rows[f"elastic beanstalk environment {r.EB_APPLICATION}/{r.EB_ENVIRONMENT} ({r.REGION})"]
    assert environment.result == PASS and environment.reason.startswith("Ready, health ")
    machine = rows[f"state machine {r.SMOKE_STATE_MACHINE_ARN}"]
    assert (machine.result, machine.reason) == (PASS, "STANDARD, ACTIVE")

    wrong = BEANSTALK_AND_STEPFUNCTIONS.read_text().replace(
        f"environment_name: {r.EB_ENVIRONMENT}", "environment_name: webapp-eb-prodution"
    )
    wrong = wrong.replace(r.SMOKE_STATE_MACHINE, "release-missing")
    rows = by_resource(check_rows(sandbox, spec(tmp_path, wrong), monkeypatch))
    environment = rows[f"elastic beanstalk environment {r.EB_APPLICATION}/webapp-eb-prodution ({r.REGION})"]
    assert environment.result == FAIL
    assert environment.reason == (
        f"DescribeEnvironments: application '{r.EB_APPLICATION}' has no environment 'webapp-eb-prodution' "
        f"(did you mean '{r.EB_ENVIRONMENT}'?)"
    )
    machine = rows[f"state machine {r.SMOKE_STATE_MACHINE_ARN.replace(r.SMOKE_STATE_MACHINE, 'release-missing')}"]
    assert machine.result == FAIL and machine.reason.startswith("DescribeStateMachine on state machine ")
    assert "StateMachineDoesNotExist" in machine.reason


STACKS = """
pipeline:
  name: stacks
  stages:
    - name: Infra
      actions:
        - name: Trusted
          type: deploy.cloudformation
          configuration:
            action_mode: DELETE_ONLY
            stack_name: {stack}
            role_arn: {trusted}
        - name: Untrusted
          type: deploy.cloudformation
          configuration:
            action_mode: DELETE_ONLY
            stack_name: {stack}
            role_arn: {untrusted}
        - name: Apply
          type: deploy.cloudformation
          configuration: {{action_mode: CHANGE_SET_EXECUTE, stack_name: {stack}, change_set_name: release}}
        - name: ApplyMissing
          type: deploy.cloudformation
          configuration: {{action_mode: CHANGE_SET_EXECUTE, stack_name: {stack}-missing, change_set_name: release}}
"""


def test_cloudformation_role_must_trust_cloudformation_and_the_stack_must_exist(sandbox, aws, tmp_path, monkeypatch):
    stack = f"preflight-{os.getpid()}"
    aws("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps({"Resources": {}}))
    trust = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
    untrusted = aws("iam").create_role(RoleName=f"build-only-{os.getpid()}", AssumeRolePolicyDocument=json.dumps(trust))
    text = STACKS.format(stack=stack, trusted=r.SERVICE_ROLE_ARN, untrusted=untrusted["Role"]["Arn"])
    rows = by_resource(check_rows(sandbox, spec(tmp_path, text), monkeypatch))
    assert rows[f"iam role {r.SERVICE_ROLE_ARN}"].result == PASS
    refused = rows[f"iam role {untrusted['Role']['Arn']}"]
    assert refused.result == FAIL
    assert refused.reason.startswith(
        f"GetRole: role 'build-only-{os.getpid()}' does not trust cloudformation.amazonaws.com"
    )
    assert rows[f"cloudformation stack {stack} ({r.REGION})"].result == PASS
    missing = rows[f"cloudformation stack {stack}-missing ({r.REGION})"]
    assert missing.result == FAIL and missing.reason.startswith(f"DescribeStacks on stack '{stack}-missing' failed")


ECS_SERVICES = """
pipeline:
  name: preflight-ecs
  stages:
    - name: Deploy
      actions:
        - name: Worker
          type: deploy.ecs
          configuration: {cluster_name: webapp, service_name: webapp-worker, image_definitions: [{name: worker, imageUri: x}]}
        - name: Web
          type: deploy.ecs
          configuration: {cluster_name: webapp, service_name: webapp-web, image_definitions: [{name: web, imageUri: x}]}
        - name: Typo
          type: deploy.ecs
          configuration: {cluster_name: webapp, service_name: webapp-wroker, image_definitions: [{name: w, imageUri: x}]}
        - name: Commands
          type: compute.commands
          configuration: {project_name: release-commands, commands: ["true"]}
"""


def test_ecs_services_must_be_active_and_ecs_controlled(sandbox, tmp_path, monkeypatch):
    rows = {row.action: row for row in check_rows(sandbox, spec(tmp_path, ECS_SERVICES), monkeypatch)}
    worker = rows["Worker"]
    assert (worker.resource, worker.result) == (f"ecs service webapp/webapp-worker ({r.REGION})", PASS)
    assert "deployment controller ECS" in worker.reason
    assert rows["Web"].result == FAIL
    assert "CODE_DEPLOY" in rows["Web"].reason and "use deploy.codedeploy with platform ecs" in rows["Web"].reason
    assert (rows["Typo"].result, rows["Typo"].reason) == (
        FAIL,
        "DescribeServices: no ACTIVE service 'webapp-wroker' in cluster 'webapp'",
    )
    assert rows["Commands"].result == PASS
