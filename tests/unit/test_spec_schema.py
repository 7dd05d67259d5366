"""The JSON Schema of pipeline specs (pipeline/schema.py): in sync with the loader, the validator and ACTION_TYPES.

The rule the schema keeps: a spec the loader accepts always validates. CASES pins where the schema stops: each
spec the loader refuses is either refused by the schema too ("both") or left to the validator ("validator").
"""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from release_orchestrator.__main__ import main
from release_orchestrator.pipeline import loader
from release_orchestrator.pipeline.action_types import ACTION_TYPES
from release_orchestrator.pipeline.importer import import_codepipeline, read_codepipeline_json
from release_orchestrator.pipeline.loader import parse_spec_text
from release_orchestrator.pipeline.schema import FIELD_DOCS, LOADER_FIELDS, SCHEMA_FILE, schema_json, spec_schema
from tests.integration.helpers import APPROVAL_TIMEOUT_MIN_SECONDS

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA = spec_schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)

# Spec files kept invalid on purpose, each with what the schema must refuse in it.
INTENTIONALLY_INVALID = {
    "tests/integration/pipelines/zz-broken-spec.yaml": "'projectName' was unexpected",
}
# ... and those whose mistake only the loader sees (what the schema cannot express), with the loader's message.
INVALID_BEYOND_THE_SCHEMA = {
    "tests/integration/pipelines/zz-misnamed-artifact.yaml": "no action writes artifact 'SourceCod'",
}


def schema_errors(document) -> list[jsonschema.ValidationError]:
    return list(VALIDATOR.iter_errors(document))


def describe(errors) -> str:
    return "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


# --- the file and the command -------------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_07_schema():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_committed_file_is_the_generated_schema():
    assert SCHEMA_FILE.parent == ROOT / "plugins" / "release_orchestrator" / "pipeline"
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(committed) == SCHEMA and committed == schema_json(), (
        f"{SCHEMA_FILE.name} is out of date: regenerate it with `PYTHONPATH=plugins:. python -m "
        f"release_orchestrator schema -o {SCHEMA_FILE.relative_to(ROOT)}`"
    )


def test_schema_command_prints_and_writes_it(capsys, tmp_path):
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_json()
    out = tmp_path / "spec.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == schema_json()


# --- generated from the tables ------------------------------------------------------------------------------------


def test_every_loader_field_is_in_the_schema_with_a_description():
    definitions = SCHEMA["definitions"]
    mappings = {**definitions, "notifications": definitions["pipeline"]["properties"]["notifications"]}
    for kind, fields in LOADER_FIELDS.items():
        properties = mappings[kind]["properties"]
        assert list(properties) == list(fields), kind
        assert mappings[kind]["additionalProperties"] is False
        for name in fields:
            assert FIELD_DOCS[kind].get(name), f"schema.FIELD_DOCS has no description of {kind} field {name!r}"
            assert properties[name]["description"] == FIELD_DOCS[kind][name]
    assert LOADER_FIELDS["action"] is loader._ACTION_FIELDS


def test_every_action_type_and_key_is_in_the_schema():
    action = SCHEMA["definitions"]["action"]
    assert action["properties"]["type"]["enum"] == list(ACTION_TYPES)
    branches = {b["if"]["properties"]["type"]["const"]: b["then"] for b in action["allOf"]}
    assert list(branches) == list(ACTION_TYPES)
    for name, action_type in ACTION_TYPES.items():
        configuration = branches[name]["properties"]["configuration"]
        assert configuration["additionalProperties"] is False
        assert configuration.get("required", []) == action_type.required_keys, name
        assert list(configuration["properties"]) == action_type.allowed_keys, name
        for key in action_type.keys:
            prop = configuration["properties"][key.name]
            assert prop["description"] == key.description
            assert prop.get("default") == key.default
            alternatives = prop.get("anyOf", [prop])
            if key.choices:
                assert alternatives[0]["enum"] == list(key.choices)
            if key.range:
                assert (alternatives[0]["minimum"], alternatives[0]["maximum"]) == key.range


# --- every spec in the repository ---------------------------------------------------------------------------------


def spec_files() -> list[Path]:
    """Every YAML file under include/pipelines and tests/ whose top level is a `pipeline:` mapping."""
    found = []
    for pattern in ("include/pipelines/*.yaml", "include/pipelines/*.yml", "tests/**/*.yaml", "tests/**/*.yml"):
        for path in sorted(ROOT.glob(pattern)):
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(document, dict) and "pipeline" in document:
                found.append(path)
    return found


SPEC_FILES = spec_files()


def test_the_spec_files_are_found():
    names = {str(p.relative_to(ROOT)) for p in SPEC_FILES}
    assert {"include/pipelines/webapp-release.yaml", "tests/unit/fixtures/specs/webapp.yaml"} <= names
    assert len([n for n in names if n.startswith("tests/integration/pipelines/")]) >= 10
    assert set(INTENTIONALLY_INVALID) <= names


@pytest.mark.parametrize("path", SPEC_FILES, ids=[str(p.relative_to(ROOT)) for p in SPEC_FILES])
def test_spec_file(path, monkeypatch):
    # As the integration environment loads them (ap-timeout.yaml's approval times out in seconds).
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_APPROVAL_TIMEOUT_MIN_SECONDS", str(APPROVAL_TIMEOUT_MIN_SECONDS))
    text = path.read_text(encoding="utf-8")
    name = str(path.relative_to(ROOT))
    _, loader_errors = parse_spec_text(text, name)
    errors = schema_errors(yaml.safe_load(text))
    if name in INTENTIONALLY_INVALID:
        assert loader_errors, f"{name} is listed as invalid but loads"
        assert any(INTENTIONALLY_INVALID[name] in e.message for e in errors), describe(errors)
    elif name in INVALID_BEYOND_THE_SCHEMA:
        assert any(INVALID_BEYOND_THE_SCHEMA[name] in str(e) for e in loader_errors), loader_errors
        assert not errors, describe(errors)
    else:
        assert not loader_errors, f"{name} does not load; list it in INTENTIONALLY_INVALID if that is on purpose"
        assert not errors, describe(errors)


@pytest.mark.parametrize("fixture", sorted((FIXTURES / "codepipeline").glob("*.json")), ids=lambda p: p.name)
def test_imported_codepipeline_specs_validate(fixture):
    result = import_codepipeline(read_codepipeline_json(fixture), source=str(fixture))
    assert not result.errors
    errors = schema_errors(yaml.safe_load(result.yaml))
    assert not errors, describe(errors)


def test_example_specs_name_the_committed_schema():
    examples = sorted((ROOT / "include" / "pipelines").glob("*.y*ml"))
    assert examples
    for path in examples:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), path.name
        assert (path.parent / first[len(prefix) :]).resolve() == SCHEMA_FILE.resolve(), path.name


# --- where the schema and the loader agree, and where the validator goes further ---------------------------------


def base() -> dict:
    return {
        "pipeline": {
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
    }


def p(d):
    return d["pipeline"]


def src(d):
    return p(d)["stages"][0]["actions"][0]


def bld(d):
    return p(d)["stages"][1]["actions"][0]


def add(d, stage, **action):
    p(d)["stages"][stage]["actions"].append(action)


def later(d, **action):
    """An action in a third stage, after Build: it may reference #{Build.*}."""
    p(d)["stages"].append({"name": "Later", "actions": [action]})


def deploy(d, **configuration):
    later(
        d,
        name="Deploy",
        type="deploy.codedeploy",
        configuration={"application_name": "app", "deployment_group_name": "group", **configuration},
    )


def trigger(d, **entry):
    p(d).setdefault("triggers", []).append(entry)


GIT = {"provider": "github", "repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}}

CASES = [
    # (id, mutation, verdict): "valid" both accept, "both" both refuse, "validator" only the loader refuses.
    ("base", lambda d: None, "valid"),
    # references stand in for any kind of value
    (
        "reference in an int",
        lambda d: later(
            d,
            name="Test",
            type="test.codebuild",
            configuration={"project_name": "t", "build_timeout_minutes": "#{Build.TIMEOUT}"},
        ),
        "valid",
    ),
    (
        "reference in a bool",
        lambda d: later(
            d,
            name="Tests",
            type="test.codebuild",
            configuration={"project_name": "p", "fail_on_test_failure": "#{variables.DeployEnv}"},
        ),
        "valid",
    ),
    (
        "reference in a choice",
        lambda d: later(d, name="Approve", type="approval.manual", configuration={"mode": "#{variables.DeployEnv}"}),
        "valid",
    ),
    (
        "reference in a list",
        lambda d: later(
            d, name="Approve", type="approval.manual", configuration={"approvers": "#{variables.DeployEnv}"}
        ),
        "valid",
    ),
    (
        "reference in a repository",
        lambda d: src(d)["configuration"].update(repository="#{variables.DeployEnv}"),
        "valid",
    ),
    ("reference as a platform", lambda d: deploy(d, platform="#{variables.DeployEnv}"), "valid"),
    ("reference inside text", lambda d: bld(d)["configuration"].update(buildspec="build-#{Src.CommitId}.yml"), "valid"),
    # fields left empty count as not given
    (
        "empty optional fields",
        lambda d: p(d).update(description=None, schedule=None, notifications=None, execution_mode=None, tags=None),
        "valid",
    ),
    (
        "empty run_order and configuration",
        lambda d: add(d, 1, name="Approve", type="approval.manual", run_order=None, configuration=None, namespace=None),
        "valid",
    ),
    ("no configuration", lambda d: add(d, 1, name="Approve", type="approval.manual"), "valid"),
    (
        "variable defaults",
        lambda d: p(d)["variables"].extend(
            [{"name": "N", "default": 3}, {"name": "B", "default": True}, {"name": "E", "default": None}]
        ),
        "valid",
    ),
    (
        "everything else",
        lambda d: p(d).update(
            execution_mode="SUPERSEDED",
            supersede_approvals=False,
            schedule="0 6 * * 1-5",
            tags=["a"],
            artifact_store="s3://bucket/p",
            artifact_kms_key="alias/release-artifacts",
            aws_conn_id="aws_x",
            region="eu-west-1",
            description="d",
            notifications={
                "topic_arn": "arn:aws:sns:us-east-1:1:t",
                "events": ["pipeline-failed"],
                "aws_conn_id": "aws_sns",
            },
        ),
        "valid",
    ),
    ("schedule preset", lambda d: p(d).update(schedule="@daily"), "valid"),
    (
        "action fields",
        lambda d: (
            p(d).update(region="us-east-1", artifact_store={"us-east-1": "s3://bucket/p", "eu-west-1": "s3://eu-b/p"}),
            src(d).update(output_artifacts=["Src"]),
            bld(d).update(
                run_order=2,
                input_artifacts=["Src"],
                output_artifacts=["Out"],
                region="eu-west-1",
                aws_conn_id="aws_prod",
                timeout_minutes=30,
            ),
        ),
        "valid",
    ),
    ("artifact nobody writes", lambda d: bld(d).update(input_artifacts=["Src"]), "validator"),
    ("artifact store not s3", lambda d: p(d).update(artifact_store="https://bucket/p"), "both"),
    ("artifact name with a space", lambda d: src(d).update(output_artifacts=["Source Code"]), "both"),
    (
        "env mapping",
        lambda d: bld(d)["configuration"].update(environment_variables={"A": "x", "N": 3, "B": True}),
        "valid",
    ),
    (
        "env list",
        lambda d: bld(d)["configuration"].update(
            environment_variables=[{"name": "A", "value": "x"}, {"name": "S", "value": "/p", "type": "PARAMETER_STORE"}]
        ),
        "valid",
    ),
    (
        "approval timeout",
        lambda d: later(d, name="Approve", type="approval.manual", configuration={"timeout": "1d12h", "mode": "form"}),
        "valid",
    ),
    ("server from github", lambda d: deploy(d, revision_github_repository="a/b", revision_github_commit="c"), "valid"),
    (
        "ecs",
        lambda d: deploy(
            d,
            platform="ecs",
            task_definition_template={"family": "web"},
            container_name="web",
            container_port=8080,
            image="#{Build.IMAGE}",
            on_ready="wait",
            hooks={"AfterAllowTestTraffic": "check"},
        ),
        "valid",
    ),
    (
        "lambda",
        lambda d: deploy(
            d,
            platform="lambda",
            function_name="f",
            alias="live",
            target_version=3,
            hooks={"BeforeAllowTraffic": "check"},
        ),
        "valid",
    ),
    (
        "git triggers",
        lambda d: (
            trigger(d, **GIT),
            trigger(
                d,
                source_action="Checkout",
                push=[
                    {"branches": {"includes": ["main"]}, "file_paths": {"excludes": ["docs/**"]}},
                    {"tags": {"includes": ["v*"], "excludes": []}},
                ],
                pull_request={"events": ["OPEN", "closed"]},
            ),
            trigger(
                d,
                provider="generic",
                repository="acme/x",
                push=None,
                pull_request=[{"branches": {"includes": ["main"]}, "file_paths": {"includes": ["src/**"]}}],
            ),
        ),
        "valid",
    ),
    (
        "event triggers",
        lambda d: (
            trigger(d, provider="s3", bucket="b", key="app.zip", queue="my-events", region="eu-west-1"),
            trigger(d, provider="ecr", repository="web"),
            trigger(d, provider="codecommit", repository="web", branches={"includes": ["main"], "excludes": None}),
            trigger(
                d,
                provider="codecommit",
                repository="web",
                branches=["main"],
                queue="https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
            ),
        ),
        "valid",
    ),
    # refused by both
    ("empty document", lambda d: d.clear(), "both"),
    ("top-level field", lambda d: d.update(version=1), "both"),
    ("unknown pipeline field", lambda d: p(d).update(executionMode="QUEUED"), "both"),
    ("pipeline name missing", lambda d: p(d).pop("name"), "both"),
    ("pipeline name empty", lambda d: p(d).update(name=None), "both"),
    ("pipeline name chars", lambda d: p(d).update(name="web app"), "both"),
    ("pipeline name length", lambda d: p(d).update(name="x" * 101), "both"),
    ("pipeline name a number", lambda d: p(d).update(name=7), "both"),
    ("stages missing", lambda d: p(d).pop("stages"), "both"),
    ("no stages", lambda d: p(d).update(stages=[]), "both"),
    (
        "too many stages",
        lambda d: p(d).update(
            stages=[{"name": f"S{i}", "actions": [{"name": "A", "type": "approval.manual"}]} for i in range(51)]
        ),
        "both",
    ),
    ("stage field", lambda d: p(d)["stages"][0].update(run_order=1), "both"),
    ("stage name chars", lambda d: p(d)["stages"][0].update(name="Sou/rce"), "both"),
    ("no actions", lambda d: p(d)["stages"][1].update(actions=[]), "both"),
    (
        "too many actions",
        lambda d: p(d)["stages"][1].update(actions=[{"name": f"A{i}", "type": "approval.manual"} for i in range(51)]),
        "both",
    ),
    ("action not a mapping", lambda d: p(d)["stages"][1]["actions"].append("Compile"), "both"),
    ("unknown action field", lambda d: bld(d).update(runOrder=2), "both"),
    ("action type missing", lambda d: bld(d).pop("type"), "both"),
    ("unknown type", lambda d: bld(d).update(type="build.jenkins"), "both"),
    ("action name chars", lambda d: bld(d).update(name="Com pile"), "both"),
    ("run_order zero", lambda d: bld(d).update(run_order=0), "both"),
    ("run_order too big", lambda d: bld(d).update(run_order=1000), "both"),
    ("run_order a bool", lambda d: bld(d).update(run_order=True), "both"),
    ("run_order a string", lambda d: bld(d).update(run_order="2"), "both"),
    ("timeout_minutes", lambda d: bld(d).update(timeout_minutes=0), "both"),
    ("namespace format", lambda d: bld(d).update(namespace="Build.Vars"), "both"),
    ("namespace reserved", lambda d: bld(d).update(namespace="variables"), "both"),
    ("artifacts not strings", lambda d: bld(d).update(output_artifacts=[1]), "both"),
    ("configuration a list", lambda d: bld(d).update(configuration=["project_name"]), "both"),
    ("configuration empty", lambda d: bld(d).update(configuration=None), "both"),
    ("missing config key", lambda d: bld(d).update(configuration={}), "both"),
    ("unknown config key", lambda d: bld(d)["configuration"].update(projectName="x"), "both"),
    ("wrong kind", lambda d: bld(d)["configuration"].update(build_timeout_minutes="ten"), "both"),
    ("bool for an int", lambda d: bld(d)["configuration"].update(build_timeout_minutes=True), "both"),
    ("range", lambda d: bld(d)["configuration"].update(build_timeout_minutes=3), "both"),
    ("config value empty", lambda d: bld(d)["configuration"].update(buildspec=None), "both"),
    ("choice", lambda d: src(d)["configuration"].update(output_format="TAR"), "both"),
    ("bool kind", lambda d: src(d)["configuration"].update(detect_changes="yes"), "both"),
    ("github repository", lambda d: src(d)["configuration"].update(repository="webapp"), "both"),
    (
        "env var type",
        lambda d: bld(d)["configuration"].update(environment_variables=[{"name": "A", "value": "b", "type": "SECRET"}]),
        "both",
    ),
    ("env var value missing", lambda d: bld(d)["configuration"].update(environment_variables=[{"name": "A"}]), "both"),
    (
        "env var field",
        lambda d: bld(d)["configuration"].update(
            environment_variables=[{"name": "A", "value": "b", "kind": "PLAINTEXT"}]
        ),
        "both",
    ),
    ("env mapping value", lambda d: bld(d)["configuration"].update(environment_variables={"A": ["x"]}), "both"),
    ("env a string", lambda d: bld(d)["configuration"].update(environment_variables="A=b"), "both"),
    (
        "approvers not strings",
        lambda d: later(d, name="Approve", type="approval.manual", configuration={"approvers": [1]}),
        "both",
    ),
    (
        "approval timeout unparsable",
        lambda d: later(d, name="Approve", type="approval.manual", configuration={"timeout": "1 week"}),
        "both",
    ),
    (
        "approval mode",
        lambda d: later(d, name="Approve", type="approval.manual", configuration={"mode": "vote"}),
        "both",
    ),
    ("platform", lambda d: deploy(d, platform="k8s"), "both"),
    (
        "bundle type",
        lambda d: deploy(d, revision_s3_bucket="b", revision_s3_key="k", revision_bundle_type="rar"),
        "both",
    ),
    ("server without revision", lambda d: deploy(d), "validator"),
    ("server half revision", lambda d: deploy(d, revision_s3_bucket="b"), "both"),
    ("ecs key on server", lambda d: deploy(d, revision_s3_bucket="b", revision_s3_key="k", image="x"), "both"),
    ("hooks on server", lambda d: deploy(d, revision_s3_bucket="b", revision_s3_key="k", hooks={}), "both"),
    ("ecs missing keys", lambda d: deploy(d, platform="ecs", task_definition_template="t.json"), "both"),
    (
        "ecs port range",
        lambda d: deploy(
            d, platform="ecs", task_definition_template="t.json", container_name="w", container_port=70000, image="i"
        ),
        "both",
    ),
    (
        "lambda key on ecs",
        lambda d: deploy(
            d,
            platform="ecs",
            task_definition_template="t.json",
            container_name="w",
            container_port=80,
            image="i",
            alias="live",
        ),
        "both",
    ),
    (
        "lambda hook event",
        lambda d: deploy(
            d, platform="lambda", function_name="f", alias="live", publish_version=True, hooks={"BeforeInstall": "h"}
        ),
        "both",
    ),
    (
        "lambda hook function",
        lambda d: deploy(
            d, platform="lambda", function_name="f", alias="live", publish_version=True, hooks={"BeforeAllowTraffic": 3}
        ),
        "both",
    ),
    ("execution mode", lambda d: p(d).update(execution_mode="SERIAL"), "both"),
    ("supersede_approvals text", lambda d: p(d).update(supersede_approvals="yes"), "both"),
    ("cron fields", lambda d: p(d).update(schedule="0 6 * *"), "both"),
    ("cron seconds", lambda d: p(d).update(schedule="0 0 6 * * *"), "both"),
    ("tags not strings", lambda d: p(d).update(tags=["a", 1]), "both"),
    ("variable name", lambda d: p(d)["variables"].append({"name": "Deploy Env"}), "both"),
    ("variable field", lambda d: p(d)["variables"].append({"name": "X", "value": "y"}), "both"),
    ("variable default a list", lambda d: p(d)["variables"].append({"name": "X", "default": ["y"]}), "both"),
    (
        "notification event",
        lambda d: p(d).update(
            notifications={"topic_arn": "arn:aws:sns:us-east-1:1:t", "events": ["pipeline-failed", "build-failed"]}
        ),
        "both",
    ),
    ("notification topic missing", lambda d: p(d).update(notifications={"events": ["pipeline-failed"]}), "both"),
    ("notification topic empty", lambda d: p(d).update(notifications={"topic_arn": ""}), "both"),
    ("triggers a mapping", lambda d: p(d).update(triggers=GIT), "both"),
    ("trigger field", lambda d: trigger(d, **GIT, branch="main"), "both"),
    ("trigger provider", lambda d: trigger(d, **{**GIT, "provider": "gitlab"}), "both"),
    ("trigger repository", lambda d: trigger(d, **{**GIT, "repository": "webapp"}), "both"),
    (
        "trigger without repository",
        lambda d: trigger(d, provider="github", push={"branches": {"includes": ["m"]}}),
        "both",
    ),
    ("trigger without filters", lambda d: trigger(d, provider="github", repository="acme/webapp"), "both"),
    ("push filter field", lambda d: trigger(d, **{**GIT, "push": {"branch": {"includes": ["main"]}}}), "both"),
    (
        "push tags and branches",
        lambda d: trigger(d, **{**GIT, "push": {"tags": {"includes": ["v*"]}, "branches": {"includes": ["main"]}}}),
        "both",
    ),
    ("push file_paths only", lambda d: trigger(d, **{**GIT, "push": {"file_paths": {"includes": ["src/**"]}}}), "both"),
    ("push empty list", lambda d: trigger(d, **{**GIT, "push": []}), "both"),
    ("patterns empty", lambda d: trigger(d, **{**GIT, "push": {"branches": {"includes": []}}}), "both"),
    ("patterns a list", lambda d: trigger(d, **{**GIT, "push": {"branches": ["main"]}}), "both"),
    ("pattern empty", lambda d: trigger(d, **{**GIT, "push": {"branches": {"includes": [""]}}}), "both"),
    ("pull request event", lambda d: trigger(d, **{**GIT, "pull_request": {"events": ["merged"]}}), "both"),
    ("pull request events empty", lambda d: trigger(d, **{**GIT, "pull_request": {"events": []}}), "both"),
    ("s3 trigger without key", lambda d: trigger(d, provider="s3", bucket="b"), "both"),
    ("s3 trigger field", lambda d: trigger(d, provider="s3", bucket="b", key="k", object_key="k"), "both"),
    ("s3 trigger reference", lambda d: trigger(d, provider="s3", bucket="#{variables.DeployEnv}", key="k"), "both"),
    ("s3 trigger blank", lambda d: trigger(d, provider="s3", bucket=" ", key="k"), "both"),
    ("trigger queue", lambda d: trigger(d, provider="ecr", repository="web", queue="my queue"), "both"),
    ("codecommit branches empty", lambda d: trigger(d, provider="codecommit", repository="r", branches=[]), "both"),
    (
        "codecommit branches mapping empty",
        lambda d: trigger(d, provider="codecommit", repository="r", branches={"excludes": None}),
        "both",
    ),
    # what only the validator sees
    ("stage name twice", lambda d: p(d)["stages"][1].update(name="Source"), "validator"),
    ("action name twice", lambda d: add(d, 1, name="Compile", type="approval.manual"), "validator"),
    (
        "airflow id collision",
        lambda d: (
            add(d, 1, name="Unit.Tests", type="approval.manual"),
            add(d, 1, name="Unit_Tests", type="approval.manual"),
        ),
        "validator",
    ),
    ("namespace twice", lambda d: bld(d).update(namespace="Src"), "validator"),
    ("variable twice", lambda d: p(d)["variables"].append({"name": "DeployEnv"}), "validator"),
    ("unknown namespace", lambda d: bld(d)["configuration"].update(source_version="#{Source.CommitId}"), "validator"),
    ("undeclared variable", lambda d: bld(d)["configuration"].update(source_version="#{variables.Env}"), "validator"),
    ("fixed outputs", lambda d: bld(d)["configuration"].update(source_version="#{Src.CommitSha}"), "validator"),
    ("cron values", lambda d: p(d).update(schedule="61 6 * * *"), "validator"),
    (
        "approval timeout short",
        lambda d: later(d, name="Approve", type="approval.manual", configuration={"timeout": "4m"}),
        "validator",
    ),
    ("supersede while queued", lambda d: p(d).update(supersede_approvals=True), "valid"),
    (
        "server both revisions",
        lambda d: deploy(
            d, revision_s3_bucket="b", revision_s3_key="k", revision_github_repository="a/b", revision_github_commit="c"
        ),
        "validator",
    ),
    ("lambda without version", lambda d: deploy(d, platform="lambda", function_name="f", alias="live"), "validator"),
    (
        "trigger source_action unknown",
        lambda d: trigger(d, source_action="Nope", push={"branches": {"includes": ["main"]}}),
        "validator",
    ),
    (
        "github pull request file_paths",
        lambda d: trigger(d, **{**GIT, "pull_request": {"file_paths": {"includes": ["src/**"]}}}),
        "validator",
    ),
    ("run_order a float", lambda d: bld(d).update(run_order=2.0), "validator"),
]


@pytest.mark.parametrize("mutate, verdict", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_schema_and_loader_agree(mutate, verdict):
    document = base()
    mutate(document)
    text = yaml.safe_dump(document, sort_keys=False) if document else ""
    _, loader_errors = parse_spec_text(text, "x.yaml")
    errors = schema_errors(yaml.safe_load(text))
    if verdict == "valid":
        assert not loader_errors, "\n".join(map(str, loader_errors))
        assert not errors, describe(errors)
    elif verdict == "both":
        assert loader_errors, "the loader accepts this spec"
        assert errors, f"the schema accepts a spec the loader refuses: {loader_errors[0]}"
    else:
        assert loader_errors, "the loader accepts this spec"
        assert not errors, describe(errors)


# --- the errors an editor shows ------------------------------------------------------------------------------------


def errors_at(mutate) -> dict[str, list[str]]:
    document = base()
    mutate(document)
    out: dict[str, list[str]] = {}
    for e in schema_errors(document):
        out.setdefault("/".join(map(str, e.absolute_path)), []).append(e.message)
    return out


BUILD = "pipeline/stages/1/actions/0"


def test_unknown_action_type():
    errors = errors_at(lambda d: bld(d).update(type="build.jenkins"))
    assert list(errors) == [f"{BUILD}/type"]
    assert "'build.jenkins' is not one of ['source.github'" in errors[f"{BUILD}/type"][0]


def test_unknown_configuration_key():
    errors = errors_at(lambda d: bld(d)["configuration"].update(projectName="x"))
    assert errors == {
        f"{BUILD}/configuration": ["Additional properties are not allowed ('projectName' was unexpected)"]
    }


def test_missing_required_key():
    errors = errors_at(lambda d: bld(d).update(configuration={"buildspec": "b.yml"}))
    assert errors == {f"{BUILD}/configuration": ["'project_name' is a required property"]}


def test_wrong_kind():
    errors = errors_at(lambda d: bld(d)["configuration"].update(build_timeout_minutes="ten"))
    assert list(errors) == [f"{BUILD}/configuration/build_timeout_minutes"]
    assert errors_at(lambda d: bld(d)["configuration"].update(project_name=3)) == {
        f"{BUILD}/configuration/project_name": ["3 is not of type 'string'"]
    }


def test_bad_choice():
    errors = errors_at(lambda d: later(d, name="Approve", type="approval.manual", configuration={"mode": "vote"}))
    assert list(errors) == ["pipeline/stages/2/actions/0/configuration/mode"]


def test_reference_in_an_int_field():
    def mutate(d):
        later(
            d,
            name="Test",
            type="test.codebuild",
            configuration={"project_name": "t", "build_timeout_minutes": "#{Build.X}"},
        )

    assert errors_at(mutate) == {}
    # Only a reference stands in for the integer: other text does not, nor a malformed reference.
    for text in ("Build.X", "#{Build}", "{Build.X}", "#{Build.X"):
        bad = errors_at(lambda d: bld(d)["configuration"].update(build_timeout_minutes=text))
        assert list(bad) == [f"{BUILD}/configuration/build_timeout_minutes"], text


def test_configuration_keys_of_another_type_are_refused():
    # source.codecommit has no output_format: the configuration follows `type`.
    errors = errors_at(
        lambda d: src(d).update(
            type="source.codecommit",
            configuration={"repository": "webapp", "branch": "main", "output_format": "CODE_ZIP"},
        )
    )
    assert errors == {
        "pipeline/stages/0/actions/0/configuration": [
            "Additional properties are not allowed ('output_format' was unexpected)"
        ]
    }
