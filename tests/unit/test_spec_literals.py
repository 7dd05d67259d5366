"""Specs are data: every string of a spec is literal text except #{...} references.

Each test compiles a spec to a DAG and renders a task's templates as a worker does (Airflow's
render_templates, with the context of a DAG run), then looks at what the operator got.
"""

from __future__ import annotations

import pytest

from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.action_types import ACTION_TYPES
from release_orchestrator.pipeline.api import action, notifications, pipeline, stage, variable
from release_orchestrator.pipeline.loader import parse_spec_text
from tests.unit.rendering import render, task_instance

SECRET = "s3cr3t-webhook-value"
BUILDSPEC = """\
version: 0.2
phases:
  build:
    commands:
      - docker inspect --format '{{.Id}}' webapp:latest
      - echo "{% raw %}{{ not jinja }}{% endraw %} {# nor this #}"
      - echo #{Source.CommitId} #{variables.Greeting} #{codepipeline.PipelineExecutionId}
"""

SPEC = """\
pipeline:
  name: literals
  variables:
    - name: Greeting
      default: "hello {{ 7*7 }}"
  stages:
    - name: Source
      actions:
        - name: Checkout
          type: source.github
          namespace: Source
          configuration: {repository: acme/webapp, branch: main}
    - name: Build
      actions:
        - name: Compile
          type: build.codebuild
          configuration:
            project_name: "webapp-{{ 7*7 }}"
            source_version: "#{Source.CommitId}"
            buildspec: |
BUILDSPEC
            environment_variables:
              - {name: HOOK, value: "{{ var.value.release_webhook_secret }}"}
              - {name: CONN, value: "{{ conn.release_db.host }}"}
              - {name: RELEASE, value: "release-#{codepipeline.PipelineExecutionId}{"}
              - {name: MIXED, value: "{#{variables.Greeting}}"}
    - name: Approval
      actions:
        - name: SignOff
          type: approval.manual
          configuration:
            custom_data: "{{ var.value.release_webhook_secret }} {{ 7*7 }} {% for x in [1] %}x{% endfor %}"
"""


def spec_text() -> str:
    indented = "".join(f"              {line}\n" for line in BUILDSPEC.splitlines())
    return SPEC.replace("BUILDSPEC\n", indented)


@pytest.fixture
def dag(monkeypatch):
    # A real Variable and Connection (Airflow's environment secrets backend) that a spec must not reach.
    monkeypatch.setenv("AIRFLOW_VAR_RELEASE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_RELEASE_DB", "postgres://user:pw@db.internal:5432/release")
    spec, errors = parse_spec_text(spec_text(), "literals.yaml")
    assert errors == []  # validate accepts Jinja-looking text: it is just text
    return compiler.build_dag(spec)


OUTPUTS = {"Source.Checkout": {"CommitId": "0a1b2c3"}}
RUN_ID = "manual__2024-01-01T00:00:00+00:00"


def test_jinja_in_a_spec_renders_as_written(dag):
    task, _ = render(dag, "Build.Compile", outputs=OUTPUTS)
    assert task.project_name == "webapp-{{ 7*7 }}"
    approval, _ = render(dag, "Approval.SignOff")
    assert approval.custom_data == "{{ var.value.release_webhook_secret }} {{ 7*7 }} {% for x in [1] %}x{% endfor %}"


def test_a_spec_cannot_read_variables_or_connections(dag):
    approval, approval_view = render(dag, "Approval.SignOff")
    assert SECRET not in repr(approval_view) and SECRET not in repr(vars(approval))
    task, view = render(dag, "Build.Compile", outputs=OUTPUTS)
    env = {v["name"]: v["value"] for v in task.environment_variables}
    assert env["HOOK"] == "{{ var.value.release_webhook_secret }}"
    assert env["CONN"] == "{{ conn.release_db.host }}"
    for shown in (repr(view), repr(vars(task))):
        assert SECRET not in shown and "db.internal" not in shown


def test_buildspec_reaches_codebuild_as_written_with_references_resolved(dag):
    task, _ = render(dag, "Build.Compile", outputs=OUTPUTS)
    expected = BUILDSPEC.replace("#{Source.CommitId}", "0a1b2c3").replace("#{variables.Greeting}", "hello {{ 7*7 }}")
    assert task.buildspec == expected.replace("#{codepipeline.PipelineExecutionId}", RUN_ID)
    ti = task_instance(dag, "Build.Compile")
    assert task.start_overrides({"ti": ti}, 1)["buildspecOverride"] == task.buildspec


def test_references_resolve_and_their_values_stay_literal(dag):
    # A value given at trigger time is inserted as it is, never rendered again.
    task, _ = render(
        dag, "Build.Compile", conf={"Greeting": "{{ 6*7 }} {{ var.value.release_webhook_secret }}"}, outputs=OUTPUTS
    )
    assert task.source_version == "0a1b2c3"
    env = {v["name"]: v["value"] for v in task.environment_variables}
    assert env["RELEASE"] == f"release-{RUN_ID}{{"
    assert env["MIXED"] == "{{{ 6*7 }} {{ var.value.release_webhook_secret }}}"
    assert "echo 0a1b2c3 {{ 6*7 }} {{ var.value.release_webhook_secret }} " + RUN_ID in task.buildspec


def test_compiled_references_are_unchanged_and_plain_text_is_left_alone(dag):
    task = dag.task_dict["Build.Compile"]
    assert task.source_version == "{{ release_output(ti, 'Source.Checkout', 'Source', 'CommitId') }}"
    assert dag.task_dict["Source.Checkout"].repository == "acme/webapp"
    assert compiler.jinja_literal("a{b\r\nc\n") == "a{{ '{' }}b{{ '\\r' }}\nc{{ '\\n' }}"


def test_text_jinja_would_change_is_kept(dag):
    spec = pipeline(
        "whitespace",
        stages=[stage("Build", [action("Compile", "build.codebuild", project_name="p", buildspec="a\r\nb\n\n")])],
    )
    task, _ = render(compiler.build_dag(spec), "Build.Compile")
    assert task.buildspec == "a\r\nb\n\n"


# One action of every type (both approval modes, the three CodeDeploy platforms), each free-text value
# holding Jinja; every template field must render to the spec's value.
JINJA = "{{ 7*7 }}{% if true %}yes{% endif %}{# c #}"
ACTIONS = [
    ("source.github", {"repository": "acme/web{{x}}", "branch": f"main{JINJA}"}),
    ("source.codecommit", {"repository": f"repo{JINJA}", "branch": f"main{JINJA}"}),
    ("source.s3", {"bucket": f"b{JINJA}", "object_key": f"k{JINJA}.zip"}),
    ("source.ecr", {"repository": f"r{JINJA}", "image_tag": f"t{JINJA}"}),
    (
        "build.codebuild",
        {
            "project_name": f"p{JINJA}",
            "source_version": f"v{JINJA}",
            "environment_variables": {"A": f"a{JINJA}"},
            "buildspec": f"b{JINJA}\n",
            "primary_source": f"s{JINJA}",
        },
    ),
    ("test.codebuild", {"project_name": f"p{JINJA}", "report_group_arn": f"arn{JINJA}", "junit_path": f"j{JINJA}"}),
    ("approval.manual", {"custom_data": f"c{JINJA}", "external_entity_link": f"https://x/{JINJA}"}),
    ("approval.manual", {"custom_data": f"c{JINJA}", "external_entity_link": f"https://x/{JINJA}", "mode": "form"}),
    (
        "deploy.codedeploy",
        {
            "application_name": f"a{JINJA}",
            "deployment_group_name": f"g{JINJA}",
            "deployment_config_name": f"c{JINJA}",
            "description": f"d{JINJA}",
            "revision_s3_bucket": f"b{JINJA}",
            "revision_s3_key": f"k{JINJA}.zip",
        },
    ),
    (
        "deploy.codedeploy",
        {
            "application_name": "a",
            "deployment_group_name": "g",
            "platform": "ecs",
            "task_definition_template": {"family": f"f{JINJA}", "containerDefinitions": [{"name": f"w{JINJA}"}]},
            "container_name": f"w{JINJA}",
            "container_port": 80,
            "image": f"i{JINJA}",
            "platform_version": f"v{JINJA}",
            "network_configuration": {"subnets": [f"s{JINJA}"]},
            "hooks": {"AfterAllowTraffic": f"h{JINJA}"},
        },
    ),
    (
        "deploy.codedeploy",
        {
            "application_name": "a",
            "deployment_group_name": "g",
            "platform": "lambda",
            "function_name": f"f{JINJA}",
            "alias": f"a{JINJA}",
            "target_version": f"2{JINJA}",
            "current_version": f"1{JINJA}",
        },
    ),
    (
        "deploy.s3",
        {
            "bucket_name": f"b{JINJA}",
            "source": f"s3://a/k{JINJA}.zip",
            "object_key": f"o{JINJA}",
            "kms_encryption_key_arn": f"arn{JINJA}",
            "cache_control": f"c{JINJA}",
        },
    ),
    # A function name cannot hold Jinja at all: the validator refuses any character Lambda does not allow.
    ("invoke.lambda", {"function_name": "f:live", "user_parameters": {"k": f"v{JINJA}", "n": [f"x{JINJA}"]}}),
    # A state machine ARN and an execution name prefix cannot hold Jinja either (the validator's patterns).
    (
        "invoke.stepfunctions",
        {"state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:m", "input": {"k": f"v{JINJA}"}},
    ),
    (
        "deploy.ecs",
        {
            "cluster_name": f"c{JINJA}",
            "service_name": f"s{JINJA}",
            "image_definitions": [{"name": f"web{JINJA}", "imageUri": f"i{JINJA}"}],
        },
    ),
    # Output variable names are environment variable names, which leave no room for Jinja.
    (
        "compute.commands",
        {"project_name": f"p{JINJA}", "commands": [f"echo {JINJA}"], "output_variables": ["OUT"]},
    ),
    # Stack names and role ARNs follow AWS's patterns, which leave no room for Jinja.
    (
        "deploy.cloudformation",
        {
            "action_mode": "CREATE_UPDATE",
            "stack_name": "webapp",
            "template": f"s3://b/t{JINJA}.yaml",
            "parameter_overrides": {"P": f"v{JINJA}"},
        },
    ),
    (
        "deploy.elasticbeanstalk",
        {
            "application_name": f"a{JINJA}",
            "environment_name": f"e{JINJA}",
            "source": f"s3://b/k{JINJA}.zip",
            "description": f"d{JINJA}",
        },
    ),
]


def test_every_template_field_of_every_action_type_renders_the_spec_value(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_X", SECRET)
    assert {t for t, _ in ACTIONS} == set(ACTION_TYPES)
    spec = pipeline(
        "every-type",
        region=f"eu-west-1{JINJA}",
        aws_conn_id=f"aws{JINJA}",
        notifications=notifications("arn:aws:sns:eu-west-1:1:t{{ var.value.x }}", ["approval-needed"]),
        stages=[
            stage(f"S{index}", [action("A", type_, configuration=config)])
            for index, (type_, config) in enumerate(ACTIONS)
        ],
    )
    dag = compiler.build_dag(spec)
    for index, (type_, config) in enumerate(ACTIONS):
        expected = {**ACTION_TYPES[type_].with_defaults(config)}
        if ACTION_TYPES[type_].uses_aws:
            expected |= {"aws_conn_id": f"aws{JINJA}", "region_name": f"eu-west-1{JINJA}"}
        if type_ == "approval.manual":
            expected["sns_topic_arn"] = "arn:aws:sns:eu-west-1:1:t{{ var.value.x }}"
        task, view = render(dag, f"S{index}.A")
        assert not task.template_ext  # no spec value is ever read as a template file
        for field in task.template_fields:
            if field in expected:
                assert getattr(task, field) == expected[field], (type_, field)
        if type_ == "approval.manual" and config.get("mode") == "form":
            assert task.body == f"c{JINJA}\n\nRelease candidate: https://x/{JINJA}"
        assert SECRET not in repr(view)


def test_python_api_strings_are_literal_too(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_RELEASE_WEBHOOK_SECRET", SECRET)
    spec = pipeline(
        "python-literals",
        variables=[variable("Note", "{{ var.value.release_webhook_secret }}")],
        stages=[
            stage(
                "Approval",
                [
                    action(
                        "SignOff",
                        "approval.manual",
                        custom_data="{{ var.value.release_webhook_secret }} #{variables.Note}",
                    )
                ],
            )
        ],
    )
    task, _ = render(compiler.build_dag(spec), "Approval.SignOff")
    assert task.custom_data == "{{ var.value.release_webhook_secret }} {{ var.value.release_webhook_secret }}"
