"""Preflight: what `check` plans for a spec, the table it prints, and the `preflight: true` field (loader,
validator, schema, and the compiler's first task)."""

from __future__ import annotations

from pathlib import Path

import pytest

from release_orchestrator.pipeline.errors import SpecError
from release_orchestrator.pipeline.loader import load_spec, load_spec_text
from release_orchestrator.pipeline.preflight import FAIL, PASS, SKIPPED_REFERENCE, Row, as_json, plan, table
from release_orchestrator.pipeline.schema import spec_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "include" / "pipelines" / "webapp-release.yaml"


def test_plan_of_the_example_names_every_resource_with_its_region_and_connection():
    checks = plan(load_spec(EXAMPLE), region="us-east-1")
    summary = [(c.stage, c.action, c.kind, c.name, c.details, c.region, c.aws_conn_id) for c in checks]
    assert summary == [
        ("-", "-", "credentials", "aws_default", {}, "us-east-1", "aws_default"),
        ("Build", "Compile", "codebuild_project", "webapp-build", {}, "us-east-1", "aws_default"),
        (
            "Test",
            "DeployStaging",
            "codedeploy_group",
            "webapp-ec2",
            {"group": "staging", "platform": "server", "config": None},
            "us-east-1",
            "aws_default",
        ),
        ("Test", "IntegrationTests", "codebuild_project", "webapp-integration-tests", {}, "us-east-1", "aws_default"),
        (
            "Deploy",
            "EC2",
            "codedeploy_group",
            "webapp-ec2",
            {"group": "production", "platform": "server", "config": "CodeDeployDefault.AllAtOnce"},
            "us-east-1",
            "aws_default",
        ),
        (
            "Deploy",
            "ECS",
            "codedeploy_group",
            "webapp-ecs",
            {"group": "production", "platform": "ecs", "config": "CodeDeployDefault.ECSAllAtOnce"},
            "us-east-1",
            "aws_default",
        ),
        (
            "Deploy",
            "Lambda",
            "codedeploy_group",
            "webapp-lambda",
            {"group": "production", "platform": "lambda", "config": "#{variables.deploy_config_lambda}"},
            "eu-west-1",
            "aws_default",
        ),
        ("Deploy", "Lambda", "lambda_function", "webapp-api", {"alias": "live"}, "eu-west-1", "aws_default"),
        (
            "-",
            "notifications",
            "sns_topic",
            "arn:aws:sns:us-east-1:123456789012:release-notifications",
            {},
            None,
            "aws_default",
        ),
        ("-", "artifact_store", "s3_bucket", "release-artifacts", {}, "us-east-1", "aws_default"),
        ("-", "artifact_store", "s3_bucket", "release-artifacts-eu-west-1", {}, "eu-west-1", "aws_default"),
    ]


def test_an_actions_own_connection_gets_its_own_credentials_check_and_the_option_replaces_the_default():
    text = EXAMPLE.read_text().replace(
        "          region: eu-west-1\n", "          region: eu-west-1\n          aws_conn_id: prod\n"
    )
    checks = plan(load_spec_text(text), aws_conn_id="staging")
    assert [(c.kind, c.aws_conn_id) for c in checks if c.kind == "credentials"] == [
        ("credentials", "staging"),
        ("credentials", "prod"),
    ]
    assert {c.aws_conn_id for c in checks if c.action == "Lambda"} == {"prod"}


def test_the_artifact_stores_bucket_is_checked_in_each_region():
    stores = [(c.stage, c.kind, c.name, c.region) for c in plan(load_spec(EXAMPLE)) if c.action == "artifact_store"]
    assert stores == [
        ("-", "s3_bucket", "release-artifacts", "us-east-1"),
        ("-", "s3_bucket", "release-artifacts-eu-west-1", "eu-west-1"),
    ]
    text = EXAMPLE.read_text().replace(
        "  artifact_store:\n", "  artifact_store: s3://release-artifacts/runs\n  stores:\n"
    )
    text = text.replace(
        "  stores:\n    us-east-1: s3://release-artifacts/runs\n    eu-west-1: s3://release-artifacts-eu-west-1/runs\n",
        "",
    )
    text = text.replace(
        "          input_artifacts: [BuildOutput]  # the function's new code", "          # no artifact"
    )
    [store] = [c for c in plan(load_spec_text(text), region="us-east-1") if c.action == "artifact_store"]
    assert (store.name, store.region) == ("release-artifacts", "us-east-1")


def test_table_has_one_row_per_check_and_counts_each_result():
    rows = [
        Row(
            "-",
            "-",
            "credentials (connection aws_default)",
            PASS,
            "account 123456789012 as arn:aws:iam::123456789012:user/ci",
        ),
        Row(
            "Build",
            "Compile",
            "codebuild project webapp-biuld (us-east-1)",
            FAIL,
            "BatchGetProjects: no project 'webapp-biuld'",
        ),
        Row(
            "Source",
            "Image",
            "ecr repository #{variables.repo} (us-east-1)",
            SKIPPED_REFERENCE,
            "known only at run time",
        ),
    ]
    assert table(rows).splitlines() == [
        "stage   action   resource                                      result               reason",
        "------  -------  --------------------------------------------  -------------------  ------",
        "-       -        credentials (connection aws_default)          pass                 "
        "account 123456789012 as arn:aws:iam::123456789012:user/ci",
        "Build   Compile  codebuild project webapp-biuld (us-east-1)    FAIL                 "
        "BatchGetProjects: no project 'webapp-biuld'",
        "Source  Image    ecr repository #{variables.repo} (us-east-1)  skipped (reference)  known only at run time",
        "1 passed, 1 failed, 1 skipped (reference)",
    ]
    report = as_json(rows, "webapp-release")
    assert (report["ok"], report["passed"], report["failed"], report["skipped"]) == (False, 1, 1, 1)
    assert report["checks"][1] == {
        "stage": "Build",
        "action": "Compile",
        "resource": "codebuild project webapp-biuld (us-east-1)",
        "result": FAIL,
        "reason": "BatchGetProjects: no project 'webapp-biuld'",
    }


MINIMAL = """
pipeline:
  name: minimal
  {field}
  stages:
    - name: {stage}
      actions:
        - name: Compile
          type: build.codebuild
          configuration:
            project_name: webapp-build
    - name: Ship
      actions:
        - name: Again
          type: build.codebuild
          configuration:
            project_name: webapp-build
"""


def test_preflight_field_is_read_validated_and_in_the_schema():
    assert load_spec_text(MINIMAL.format(field="preflight: true", stage="Build")).preflight is True
    assert load_spec_text(MINIMAL.format(field="", stage="Build")).preflight is False
    with pytest.raises(SpecError, match="field 'preflight': expected true or false"):
        load_spec_text(MINIMAL.format(field="preflight: yes please", stage="Build"))
    with pytest.raises(SpecError, match=r"first task is Preflight.Check; rename this stage"):
        load_spec_text(MINIMAL.format(field="preflight: true", stage="Preflight"))
    # Without preflight a stage may be called so.
    load_spec_text(MINIMAL.format(field="", stage="Preflight"))
    field = spec_schema()["definitions"]["pipeline"]["properties"]["preflight"]
    assert (
        field["type"] == ["boolean", "null"] and field["default"] is False and "Preflight.Check" in field["description"]
    )


def test_compiler_puts_preflight_check_first_and_everything_after_it():
    from release_orchestrator.pipeline.compiler import build_dag

    dag = build_dag(load_spec(EXAMPLE))
    assert "Preflight.Check" not in dag.task_dict
    text = EXAMPLE.read_text().replace("  execution_mode: QUEUED\n", "  execution_mode: QUEUED\n  preflight: true\n")
    pipeline = load_spec_text(text, source=str(EXAMPLE))
    dag = build_dag(pipeline)
    check = dag.get_task("Preflight.Check")
    assert [t.task_id for t in dag.roots] == ["Preflight.Check"]
    assert check.get_flat_relative_ids(upstream=False) == set(dag.task_dict) - {"Preflight.Check"}
    assert check.checks == [vars(c) for c in plan(pipeline)]
    # The run starts with the check, so the pipeline-started notification goes with it.
    assert [n.event for n in check.on_execute_callback] == ["pipeline-started"]
    assert not dag.get_task("Source.Checkout").on_execute_callback


def test_a_dag_with_preflight_serializes_as_the_scheduler_stores_it():
    import json

    from airflow.serialization.serialized_objects import DagSerialization

    from release_orchestrator.pipeline.compiler import build_dag

    text = EXAMPLE.read_text().replace("  execution_mode: QUEUED\n", "  execution_mode: QUEUED\n  preflight: true\n")
    serialized = json.dumps(DagSerialization.to_dict(build_dag(load_spec_text(text, source=str(EXAMPLE)))))
    restored = DagSerialization.from_dict(json.loads(serialized))
    assert restored.get_task("Preflight.Check").downstream_task_ids == {"Source.Checkout", "Source.Enter"}


def test_every_action_type_that_calls_aws_declares_its_checks_and_permissions():
    from release_orchestrator.pipeline.action_types import ACTION_TYPES
    from release_orchestrator.pipeline.preflight import CHECKERS

    for action_type in ACTION_TYPES.values():
        if action_type.uses_aws:
            assert action_type.resources and action_type.permissions, action_type.name
    kinds = {check.kind for check in plan(load_spec(EXAMPLE))}
    assert kinds <= set(CHECKERS)


def test_s3_deploys_and_lambda_invokes_check_their_buckets_and_function():
    from tests.unit.test_iam_policy import SITE

    checks = plan(load_spec_text(SITE))
    named = [(c.action, c.kind, c.name) for c in checks if c.stage == "Deploy"]
    assert named == [
        ("Website", "s3_bucket", "site-www"),
        ("Website", "s3_bucket", "release-artifacts"),  # the artifact's bucket, its key being a reference
        ("Archive", "s3_bucket", "site-archive"),
        ("Archive", "s3_bucket", "release-artifacts"),
        ("Smoke", "lambda_function", "site-smoke:live"),
    ]
    assert all(c.region == "us-east-1" for c in checks if c.stage == "Deploy")


def test_plan_of_step_functions_and_elastic_beanstalk():
    checks = plan(load_spec(Path(__file__).parent / "fixtures" / "specs" / "beanstalk-and-stepfunctions.yaml"))
    assert [(c.action, c.kind, c.name, c.details, c.region) for c in checks[1:]] == [
        (
            "Beanstalk",
            "elasticbeanstalk_environment",
            "webapp-eb",
            {"environment": "webapp-eb-production"},
            "us-east-1",
        ),
        ("Beanstalk", "s3_bucket", "release-artifacts", {}, "us-east-1"),
        (
            "Smoke",
            "stepfunctions_state_machine",
            "arn:aws:states:us-east-1:123456789012:stateMachine:release-smoke-tests",
            {},
            "us-east-1",
        ),
    ]


STACKS = """
pipeline:
  name: stacks
  region: us-east-1
  stages:
    - name: Infra
      actions:
        - name: Plan
          type: deploy.cloudformation
          configuration:
            action_mode: CHANGE_SET_REPLACE
            stack_name: webapp
            change_set_name: release
            template: s3://templates/webapp.yaml
            role_arn: arn:aws:iam::123456789012:role/cfn-deploy
        - name: Apply
          type: deploy.cloudformation
          run_order: 2
          configuration: {action_mode: CHANGE_SET_EXECUTE, stack_name: webapp, change_set_name: release}
"""


def test_cloudformation_checks_the_stacks_role_and_the_stack_a_change_set_executes_on():
    checks = [(c.stage, c.action, c.kind, c.name, c.details) for c in plan(load_spec_text(STACKS))]
    assert checks[1:] == [
        (
            "Infra",
            "Plan",
            "iam_role",
            "arn:aws:iam::123456789012:role/cfn-deploy",
            {"service": "cloudformation.amazonaws.com"},
        ),
        ("Infra", "Apply", "cloudformation_stack", "webapp", {}),
    ]


ECS_AND_COMMANDS = """
pipeline:
  name: worker
  region: us-east-1
  stages:
    - name: Release
      actions:
        - name: Migrate
          type: compute.commands
          configuration: {project_name: release-commands, commands: [./migrate]}
        - name: Worker
          type: deploy.ecs
          run_order: 2
          configuration:
            cluster_name: webapp
            service_name: webapp-worker
            image_definitions: [{name: worker, imageUri: "webapp:v2"}]
"""


def test_ecs_service_and_commands_project_are_planned():
    checks = [(c.action, c.kind, c.name, c.details) for c in plan(load_spec_text(ECS_AND_COMMANDS))]
    assert checks[1:] == [
        ("Migrate", "codebuild_project", "release-commands", {}),
        ("Worker", "ecs_service", "webapp-worker", {"cluster": "webapp"}),
    ]
    rows = [Row("Release", "Worker", "ecs service webapp/webapp-worker (us-east-1)", PASS)]
    assert "ecs service webapp/webapp-worker (us-east-1)" in table(rows)
