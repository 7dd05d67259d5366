"""Validation rules: each one with a spec that breaks it."""

from datetime import timedelta

import pytest
import yaml

from release_orchestrator.pipeline.loader import parse_spec_text
from release_orchestrator.pipeline.model import Action, Pipeline, Stage
from release_orchestrator.pipeline.validate import find_references, parse_duration, validate


def base() -> dict:
    return {
        "name": "webapp",
        "variables": [{"name": "DeployEnv", "default": "staging"}],
        "stages": [
            {
                "name": "Source",
                "actions": [
                    {
                        "name": "Checkout",
                        "type": "source.github",
                        "namespace": "Src",
                        "configuration": {"repository": "acme/webapp", "branch": "main"},
                    },
                ],
            },
            {
                "name": "Build",
                "actions": [
                    {
                        "name": "Compile",
                        "type": "build.codebuild",
                        "namespace": "Build",
                        "configuration": {"project_name": "webapp-build"},
                    },
                ],
            },
        ],
    }


def source(p):
    return p["stages"][0]["actions"][0]


def build(p):
    return p["stages"][1]["actions"][0]


def add_action(p, stage_index, **action):
    p["stages"][stage_index]["actions"].append(action)


def errors_for(mutate):
    p = base()
    mutate(p)
    _, errors = parse_spec_text(yaml.safe_dump({"pipeline": p}, sort_keys=False), "x.yaml")
    return errors


def test_base_spec_is_valid():
    assert errors_for(lambda p: None) == []


CASES = [
    # (id, mutation, expected field, expected message part)
    ("pipeline name chars", lambda p: p.update(name="web app"), "name", "1-100 characters"),
    ("pipeline name length", lambda p: p.update(name="x" * 101), "name", "1-100 characters"),
    ("stage name chars", lambda p: p["stages"][0].update(name="Sou/rce"), "name", "stage name"),
    ("action name chars", lambda p: build(p).update(name="Com pile"), "name", "action name"),
    ("duplicate stage", lambda p: p["stages"][1].update(name="Source"), "name", "used twice"),
    (
        "duplicate action",
        lambda p: add_action(p, 1, name="Compile", type="build.codebuild", configuration={"project_name": "x"}),
        "name",
        "used twice in this stage",
    ),
    ("no stages", lambda p: p.update(stages=[]), "stages", "1 to 50 stages"),
    (
        "too many stages",
        lambda p: p.update(
            stages=[{"name": f"S{i}", "actions": [{"name": "A", "type": "approval.manual"}]} for i in range(51)]
        ),
        "stages",
        "1 to 50 stages, this one has 51",
    ),
    ("no actions", lambda p: p["stages"][1].update(actions=[]), "actions", "1 to 50 actions"),
    (
        "too many actions",
        lambda p: p["stages"][1].update(actions=[{"name": f"A{i}", "type": "approval.manual"} for i in range(51)]),
        "actions",
        "this one has 51",
    ),
    ("run_order zero", lambda p: build(p).update(run_order=0), "run_order", "1 to 999"),
    ("run_order too big", lambda p: build(p).update(run_order=1000), "run_order", "1 to 999"),
    ("unknown type", lambda p: build(p).update(type="build.jenkins"), "type", "unknown action type 'build.jenkins'"),
    (
        "missing config key",
        lambda p: build(p).update(configuration={}),
        "configuration.project_name",
        "missing required key; allowed keys: project_name",
    ),
    (
        "unknown config key",
        lambda p: build(p)["configuration"].update(projectName="x"),
        "configuration.projectName",
        "unknown key (did you mean 'project_name'?)",
    ),
    (
        "wrong kind",
        lambda p: build(p)["configuration"].update(build_timeout_minutes="ten"),
        "configuration.build_timeout_minutes",
        "expected an integer",
    ),
    (
        "choice",
        lambda p: add_action(p, 1, name="Approve", type="approval.manual", configuration={"mode": "vote"}),
        "configuration.mode",
        "not one of mark, form",
    ),
    (
        "retired key",
        lambda p: source(p)["configuration"].update(detect_changes=False),
        "configuration.detect_changes",
        "not supported: changes start a pipeline through its `triggers`",
    ),
    (
        "github repository",
        lambda p: source(p)["configuration"].update(repository="webapp"),
        "configuration.repository",
        "expected 'owner/name'",
    ),
    (
        "env var type",
        lambda p: build(p)["configuration"].update(
            environment_variables=[{"name": "A", "value": "b", "type": "SECRET"}]
        ),
        "configuration.environment_variables[0].type",
        "must be one of PLAINTEXT",
    ),
    ("namespace format", lambda p: build(p).update(namespace="Build.Vars"), "namespace", "must be 1-100"),
    ("namespace reserved", lambda p: build(p).update(namespace="variables"), "namespace", "reserved"),
    (
        "namespace twice",
        lambda p: build(p).update(namespace="Src"),
        "namespace",
        "already used by action 'Checkout' in stage 'Source'",
    ),
    (
        "unknown namespace",
        lambda p: build(p)["configuration"].update(source_version="#{Source.CommitId}"),
        "configuration.source_version",
        "namespace 'Source' is not set by any action",
    ),
    (
        "nested reference",
        lambda p: build(p)["configuration"].update(
            environment_variables=[{"name": "A", "value": "x-#{Nope.CommitId}"}]
        ),
        "configuration.environment_variables[0].value",
        "namespace 'Nope' is not set",
    ),
    (
        "later stage",
        lambda p: source(p)["configuration"].update(branch="#{Build.Branch}"),
        "configuration.branch",
        "does not finish before this action",
    ),
    (
        "same run_order",
        lambda p: add_action(
            p,
            1,
            name="Test",
            type="test.codebuild",
            configuration={"project_name": "t", "source_version": "#{Build.X}"},
        ),
        "configuration.source_version",
        "does not finish before this action",
    ),
    (
        "self reference",
        lambda p: build(p)["configuration"].update(source_version="#{Build.BuildId}"),
        "configuration.source_version",
        "does not finish before this action",
    ),
    (
        "undeclared variable",
        lambda p: build(p)["configuration"].update(source_version="#{variables.Env}"),
        "configuration.source_version",
        "pipeline variable 'Env' is not declared; declared variables: DeployEnv",
    ),
    (
        "codepipeline namespace",
        lambda p: build(p)["configuration"].update(source_version="#{codepipeline.Foo}"),
        "configuration.source_version",
        "PipelineExecutionId",
    ),
    (
        "fixed outputs",
        lambda p: build(p)["configuration"].update(source_version="#{Src.CommitSha}"),
        "configuration.source_version",
        "has no output 'CommitSha'",
    ),
    (
        "approval timeout unparsable",
        lambda p: add_action(p, 1, name="Approve", type="approval.manual", configuration={"timeout": "1 week"}),
        "configuration.timeout",
        "invalid duration",
    ),
    (
        "approval timeout short",
        lambda p: add_action(p, 1, name="Approve", type="approval.manual", configuration={"timeout": "4m"}),
        "configuration.timeout",
        "5 minutes to 60 days",
    ),
    (
        "approval timeout long",
        lambda p: add_action(p, 1, name="Approve", type="approval.manual", configuration={"timeout": "61d"}),
        "configuration.timeout",
        "5 minutes to 60 days",
    ),
    (
        "execution mode",
        lambda p: p.update(execution_mode="SERIAL"),
        "execution_mode",
        "unknown execution mode 'SERIAL'",
    ),
    ("cron fields", lambda p: p.update(schedule="0 6 * *"), "schedule", "invalid cron schedule"),
    ("cron values", lambda p: p.update(schedule="61 6 * * *"), "schedule", "invalid cron schedule"),
    ("cron seconds", lambda p: p.update(schedule="0 0 6 * * *"), "schedule", "invalid cron schedule"),
    (
        "notification event",
        lambda p: p.update(
            notifications={"topic_arn": "arn:aws:sns:us-east-1:1:t", "events": ["pipeline-failed", "build-failed"]}
        ),
        "notifications.events[1]",
        "unknown event 'build-failed'",
    ),
    ("variable twice", lambda p: p["variables"].append({"name": "DeployEnv"}), "variables[1].name", "declared twice"),
    (
        "variable name",
        lambda p: p["variables"].append({"name": "Deploy Env"}),
        "variables[1].name",
        "must be 1-128 characters",
    ),
    ("timeout_minutes", lambda p: build(p).update(timeout_minutes=0), "timeout_minutes", "positive integer"),
]


@pytest.mark.parametrize("mutate, field, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(mutate, field, message):
    errors = errors_for(mutate)
    assert any(e.field == field and message in e.message for e in errors), "\n".join(map(str, errors))


DEPLOY_CASES = [
    ("server without revision", {}, "revision_s3_bucket", "needs a revision"),
    ("server half revision", {"revision_s3_bucket": "b"}, "revision_s3_key", "missing required key"),
    (
        "server both revisions",
        {
            "revision_s3_bucket": "b",
            "revision_s3_key": "k",
            "revision_github_repository": "a/b",
            "revision_github_commit": "c",
        },
        "revision_s3_bucket",
        "not both",
    ),
    (
        "ecs missing keys",
        {"platform": "ecs", "task_definition_template": "t.json"},
        "container_port",
        "missing required key for platform ecs",
    ),
    (
        "ecs key on server",
        {"revision_s3_bucket": "b", "revision_s3_key": "k", "image": "x"},
        "image",
        "only applies to platform ecs",
    ),
    (
        "lambda without version",
        {"platform": "lambda", "function_name": "f", "alias": "live"},
        "target_version",
        "exactly one of",
    ),
    (
        "lambda both versions",
        {"platform": "lambda", "function_name": "f", "alias": "live", "target_version": 3, "publish_version": True},
        "target_version",
        "exactly one of",
    ),
    (
        "lambda hook event",
        {
            "platform": "lambda",
            "function_name": "f",
            "alias": "live",
            "publish_version": True,
            "hooks": {"BeforeInstall": "h"},
        },
        "hooks.BeforeInstall",
        "unknown lifecycle event",
    ),
    ("platform", {"platform": "k8s"}, "platform", "not one of server, ecs, lambda"),
    (
        "bundle type",
        {"revision_s3_bucket": "b", "revision_s3_key": "k", "revision_bundle_type": "rar"},
        "revision_bundle_type",
        "not one of",
    ),
]


@pytest.mark.parametrize("extra, key, message", [c[1:] for c in DEPLOY_CASES], ids=[c[0] for c in DEPLOY_CASES])
def test_codedeploy_platform_rules(extra, key, message):
    def mutate(p):
        add_action(
            p,
            1,
            name="Deploy",
            type="deploy.codedeploy",
            run_order=2,
            configuration={"application_name": "app", "deployment_group_name": "group", **extra},
        )

    errors = errors_for(mutate)
    assert any(e.field == f"configuration.{key}" and message in e.message for e in errors), "\n".join(map(str, errors))


def test_valid_references_and_schedules():
    def mutate(p):
        p["schedule"] = "@daily"
        build(p)["configuration"]["source_version"] = "#{Src.CommitId}"
        build(p)["configuration"]["environment_variables"] = {
            "RUN": "#{codepipeline.PipelineExecutionId}",
            "ENV": "#{variables.DeployEnv}",
        }
        add_action(
            p,
            1,
            name="Test",
            type="test.codebuild",
            run_order=2,
            configuration={"project_name": "t", "source_version": "#{Build.ANY_EXPORTED_NAME}"},
        )

    assert errors_for(mutate) == []


def test_errors_carry_file_line_and_context():
    text = """\
pipeline:
  name: webapp
  stages:
    - name: Build
      actions:
        - name: Compile
          type: build.codebuild
          configuration:
            buildspec: buildspec.yml
            source_version: "#{Src.CommitId}"
"""
    _, errors = parse_spec_text(text, "include/pipelines/x.yaml")
    by_field = {e.field: e for e in errors}
    missing = by_field["configuration.project_name"]
    assert (missing.file, missing.line, missing.stage, missing.action) == (
        "include/pipelines/x.yaml",
        8,
        "Build",
        "Compile",
    )
    assert str(missing).startswith(
        "include/pipelines/x.yaml:8: stage 'Build', action 'Compile', field "
        "'configuration.project_name': missing required key; allowed keys: project_name,"
    )
    assert by_field["configuration.source_version"].line == 10


def test_validate_works_on_python_models():
    p = Pipeline(name="webapp", stages=[Stage("Build", [Action("Compile", "build.codebuild", run_order=1000)])])
    errors = validate(p)
    assert {e.field for e in errors} == {"run_order", "configuration.project_name"}
    assert str(errors[0]).startswith("pipeline 'webapp': stage 'Build', action 'Compile'")


def test_parse_duration():
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1d12h") == timedelta(days=1, hours=12)
    for bad in ("", "12", "h", "1h1d", "1 d", "1w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_find_references():
    config = {"a": "#{Src.CommitId}-#{variables.Env}", "b": [{"c": "x#{Build.BuildId}"}], "d": 3, "e": "#{nodot}"}
    assert find_references(config) == [("Src", "CommitId"), ("variables", "Env"), ("Build", "BuildId")]
    assert find_references("#{codepipeline.PipelineExecutionId}") == [("codepipeline", "PipelineExecutionId")]


def test_names_that_collide_as_airflow_ids_are_refused():
    from release_orchestrator.pipeline.api import action, stage
    from release_orchestrator.pipeline.model import Pipeline
    from release_orchestrator.pipeline.validate import validate

    p = Pipeline(
        name="collide",
        stages=[
            stage(
                "Build",
                [
                    action("Unit.Tests", "build.codebuild", project_name="a"),
                    action("Unit_Tests", "build.codebuild", project_name="b"),
                ],
            ),
            stage("Ship.It", [action("Go", "build.codebuild", project_name="c")]),
            stage("Ship@It", [action("Go", "build.codebuild", project_name="c")]),
        ],
    )
    messages = [str(e) for e in validate(p)]
    assert any("'Unit.Tests' and 'Unit_Tests' both become Airflow task id 'Unit_Tests'" in m for m in messages)
    assert any("'Ship.It' and 'Ship@It' both become Airflow group id 'Ship_It'" in m for m in messages)


def test_trigger_filters_are_validated_with_the_spec():
    from release_orchestrator.pipeline.errors import SpecError
    from release_orchestrator.pipeline.loader import load_spec_text

    text = """pipeline:
  name: trig
  triggers:
    - provider: github
      repository: acme/x
      push:
        branches: {includs: [main]}
  stages:
    - name: Source
      actions:
        - name: Checkout
          type: source.github
          configuration: {repository: acme/x, branch: main}
"""
    with pytest.raises(SpecError, match=r"<string>:7: field 'triggers\[0\].push.branches.includs'.*includes"):
        load_spec_text(text)
