"""compute.commands: the buildspec it starts CodeBuild with, its outputs, its spec rules and its import."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import yaml
from airflow.providers.common.compat.sdk import TaskDeferred

from release_orchestrator.hooks.codebuild import CodeBuildHook
from release_orchestrator.operators.commands import CommandsOperator, commands_buildspec
from release_orchestrator.pipeline.loader import parse_spec_text
from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger
from tests.unit.fakes import task_context


@pytest.fixture
def project(codebuild_project):
    return codebuild_project


@pytest.fixture
def context():
    return task_context()


def test_the_build_runs_the_commands_in_order_and_exports_the_output_variables(project, context, monkeypatch):
    started = {}
    start = CodeBuildHook.start_build

    def recording(hook, project_name, **overrides):
        started.update(overrides, project=project_name)
        return start(hook, project_name, **overrides)

    monkeypatch.setattr(CodeBuildHook, "start_build", recording)
    op = CommandsOperator(
        task_id="migrate",
        project_name=project,
        # As Airflow renders a list given as a JSON string (a #{...} reference to a list).
        commands=json.dumps(["./manage.py migrate", "export SCHEMA=$(./manage.py version)"]),
        output_variables=["SCHEMA"],
        environment_variables={"STAGE": "prod"},
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert isinstance(deferred.value.trigger, CodeBuildBuildTrigger)  # build.codebuild's wait, reattach and stop
    assert started["project"] == project
    assert yaml.safe_load(started["buildspecOverride"]) == {
        "version": 0.2,
        "env": {"exported-variables": ["SCHEMA"]},
        "phases": {"build": {"commands": ["./manage.py migrate", "export SCHEMA=$(./manage.py version)"]}},
    }
    assert started["environmentVariablesOverride"] == [{"name": "STAGE", "value": "prod", "type": "PLAINTEXT"}]
    assert "idempotencyToken" in started


def test_on_kill_stops_the_build_of_the_commands(project, context):
    op = CommandsOperator(task_id="migrate", project_name=project, commands=["./manage.py migrate"])
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    # moto reports its builds finished at once, so the call is what can be checked here; the sandbox test
    # (tests/sandbox/test_sandbox_commands.py) sees the build stopped.
    with mock.patch.object(op.hook.conn, "stop_build", wraps=op.hook.conn.stop_build) as stop:
        op.on_kill()  # the task was killed while its worker ran it
    stop.assert_called_once_with(id=deferred.value.trigger.build_id)


def test_without_output_variables_nothing_is_exported():
    assert yaml.safe_load(commands_buildspec(["make test"])) == {
        "version": 0.2,
        "phases": {"build": {"commands": ["make test"]}},
    }


def test_exported_variables_are_the_outputs(project):
    op = CommandsOperator(task_id="t", project_name=project, commands=["export A=1"], output_variables=["A"])
    build = {
        "id": f"{project}:abc",
        "buildNumber": 3,
        "buildStatus": "SUCCEEDED",
        "resolvedSourceVersion": "",
        "exportedEnvironmentVariables": [{"name": "A", "value": "1"}],
        "logs": {},
    }
    outputs = op.result().conclude(build, op.log)
    assert outputs["A"] == "1" and outputs["BuildId"] == f"{project}:abc" and outputs["BuildStatus"] == "SUCCEEDED"


def test_a_project_is_required():
    with pytest.raises(ValueError, match="compute.commands needs project_name: the CodeBuild project"):
        CommandsOperator(task_id="t", commands=["true"])


def spec_errors(configuration: dict):
    spec = {
        "pipeline": {
            "name": "p",
            "stages": [
                {
                    "name": "Run",
                    "actions": [{"name": "Cmd", "type": "compute.commands", "configuration": configuration}],
                }
            ],
        }
    }
    _, errors = parse_spec_text(yaml.safe_dump(spec), "p.yaml")
    return {(e.stage, e.action, e.field): e.message for e in errors}


def test_spec_rules_name_the_stage_action_and_field():
    errors = spec_errors({"commands": ["echo a\necho b"], "output_variables": ["NOT-A-NAME"]})
    assert "a project with no source" in errors[("Run", "Cmd", "configuration.project_name")]
    assert "multi-line" in errors[("Run", "Cmd", "configuration.commands[0]")]
    assert "not an environment variable name" in errors[("Run", "Cmd", "configuration.output_variables[0]")]
    assert spec_errors({"commands": ["echo hi"], "project_name": "p"}) == {}


COMMANDS_THEN_DEPLOY = """
pipeline:
  name: p
  stages:
    - name: Run
      actions:
        - name: Migrate
          type: compute.commands
          namespace: Migrate
          configuration:
            project_name: release-commands
            commands: [export SCHEMA_VERSION=7]
            output_variables: [SCHEMA_VERSION]
    - name: Deploy
      actions:
        - name: Build
          type: build.codebuild
          configuration:
            project_name: webapp-build
            environment_variables: {SCHEMA: "#{Migrate.SCHEMA_VERISON}", BUILD: "#{Migrate.BuildId}"}
"""


def test_a_reference_to_a_variable_the_commands_do_not_export_is_an_error():
    _, errors = parse_spec_text(COMMANDS_THEN_DEPLOY, "release.yaml")
    [error] = errors
    assert (error.file, error.stage, error.action, error.field) == (
        "release.yaml",
        "Deploy",
        "Build",
        "configuration.environment_variables.SCHEMA",
    )
    assert error.message == (
        "#{Migrate.SCHEMA_VERISON}: compute.commands action 'Migrate' has no output 'SCHEMA_VERISON' "
        "(did you mean 'SCHEMA_VERSION'?); its outputs: BuildId, BuildNumber, BuildStatus, "
        "ResolvedSourceVersion, LogsUrl, SCHEMA_VERSION (output_variables names the variables it exports)"
    )
    # The exported variable and CodeBuild's outputs are fine; so is any name when the list is a reference.
    assert parse_spec_text(COMMANDS_THEN_DEPLOY.replace("VERISON", "VERSION"))[1] == []
    by_reference = COMMANDS_THEN_DEPLOY.replace("[SCHEMA_VERSION]", '"#{variables.names}"').replace(
        "  stages:", "  variables: [{name: names, default: '[]'}]\n  stages:"
    )
    assert parse_spec_text(by_reference)[1] == []


def test_both_new_types_compile_into_a_dag():
    from release_orchestrator.operators.ecs import EcsDeployOperator
    from release_orchestrator.pipeline.compiler import build_dag
    from release_orchestrator.pipeline.loader import load_spec_text
    from tests.unit.test_preflight import ECS_AND_COMMANDS

    dag = build_dag(load_spec_text(ECS_AND_COMMANDS))
    commands, deploy = dag.get_task("Release.Migrate"), dag.get_task("Release.Worker")
    assert isinstance(commands, CommandsOperator) and commands.commands == ["./migrate"]
    assert commands.project_name == "release-commands" and commands.region_name == "us-east-1"
    assert isinstance(deploy, EcsDeployOperator) and deploy.deployment_timeout == 60
    assert deploy.image_definitions == [{"name": "worker", "imageUri": "webapp:v2"}]
    assert commands.downstream_task_ids == {"Release.Worker"}
