"""Loading YAML specs: the model they give, and errors located by file:line."""

import pickle
import shutil
from pathlib import Path

import pytest

from release_orchestrator.pipeline.errors import SpecError
from release_orchestrator.pipeline.loader import load_spec, load_spec_text, load_specs, parse_spec_text
from release_orchestrator.pipeline.model import Notifications, Variable

FIXTURES = Path(__file__).parent / "fixtures"
WEBAPP = FIXTURES / "specs" / "webapp.yaml"

MINIMAL = """\
pipeline:
  name: {name}
  stages:
    - name: Approve
      actions:
        - name: Approve
          type: approval.manual
"""


def test_load_spec_builds_the_model():
    p = load_spec(WEBAPP)
    assert (p.name, p.execution_mode, p.schedule, p.region) == ("webapp", "QUEUED", "0 6 * * 1-5", "us-east-1")
    assert p.source_file == str(WEBAPP)
    assert p.tags == ["webapp", "production"]
    assert p.variables == [Variable("DeployEnv", "staging", "environment to deploy to")]
    assert p.notifications == Notifications(
        "arn:aws:sns:us-east-1:123456789012:release-notifications", ["pipeline-failed", "approval-needed"]
    )
    assert [s.name for s in p.stages] == ["Source", "Build", "Staging", "Production"]
    compile_, tests = p.stages[1].actions
    assert compile_.type == "build.codebuild" and compile_.namespace == "Build"
    assert compile_.input_artifacts == ["SourceArtifact"] and compile_.output_artifacts == ["BuildArtifact"]
    assert compile_.configuration["environment_variables"] == {
        "ENV": "#{variables.DeployEnv}",
        "CONFIG_VERSION": "#{Config.VersionId}",
    }
    assert type(compile_.configuration) is dict  # plain data for the compiler, lines kept aside
    assert (tests.run_order, tests.timeout_minutes) == (2, 60)
    assert p.stages[3].actions[1].region == "eu-west-1" and p.stages[3].actions[1].aws_conn_id == "aws_eu"
    assert p.stages[1].line == 44 and compile_.line == 46
    assert compile_.lines["configuration.project_name"] == 52


def test_defaults_and_empty_fields():
    p = load_spec_text(MINIMAL.format(name="x") + "  schedule:\n  description:\n")
    assert (p.execution_mode, p.aws_conn_id, p.schedule, p.description) == ("QUEUED", "aws_default", None, "")
    assert p.stages[0].actions[0].run_order == 1 and p.stages[0].actions[0].configuration == {}


def test_variable_defaults_are_strings():
    text = MINIMAL.format(name="x") + "  variables:\n    - {name: N, default: 3}\n    - {name: B, default: true}\n"
    assert [v.default for v in load_spec_text(text).variables] == ["3", "true"]


def test_unknown_field_suggests_the_right_one():
    text = MINIMAL.format(name="x") + "          runOrder: 2\n"
    with pytest.raises(SpecError) as e:
        load_spec_text(text, "x.yaml")
    assert str(e.value).startswith(
        "x.yaml:8: stage 'Approve', action 'Approve': unknown field 'runOrder' "
        "(did you mean 'run_order'?); allowed fields: name, type, run_order"
    )


def test_wrong_types_and_missing_fields():
    text = """\
pipeline:
  name: 12
  stages:
    - name: Build
      actions:
        - name: Compile
          run_order: "2"
          input_artifacts: [a, [b]]
"""
    _, errors = parse_spec_text(text, "x.yaml")
    found = {(e.line, e.field): e.message for e in errors}
    assert found[(2, "name")] == "expected a string, got an integer (quote it to make it a string)"
    assert found[(7, "run_order")] == "expected an integer, got a string"
    assert found[(8, "input_artifacts[1]")] == "expected a string, got a list"
    assert found[(6, "type")].startswith("missing required field")
    # The validator judges what the loader kept ('a'), and does not repeat what the loader said.
    assert found[(8, "input_artifacts[0]")].startswith("no action writes artifact 'a'")
    assert "no artifact store" in found[(8, "input_artifacts")]
    assert len(errors) == 6


def test_several_errors_are_all_reported_one_per_line():
    text = MINIMAL.format(name="bad name") + "          namespace: a.b\n  execution_mode: SERIAL\n"
    with pytest.raises(SpecError) as e:
        load_spec_text(text, "x.yaml")
    assert len(e.value.errors) == 3
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and all(line.startswith("x.yaml:") for line in lines)
    assert [err.line for err in e.value.errors] == sorted(err.line for err in e.value.errors)


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("", 1, "empty spec"),
        ("pipeline: [1]\n", 1, "expected a mapping"),
        ("name: x\n", 1, "unknown field 'name'"),
        ("pipeline:\n  name: x\n  stages: [\n", 4, "invalid YAML"),
        ("pipeline:\n  name: x\n  name: y\n  stages: []\n", 3, "key 'name' is given twice"),
        ("pipeline: !!python/object:os.system {}\n", 1, "invalid YAML"),
    ],
)
def test_structural_errors(text, line, message):
    _, errors = parse_spec_text(text, "x.yaml")
    assert any(e.line == line and message in e.message for e in errors), "\n".join(map(str, errors))


def test_load_specs_reports_each_bad_file_and_keeps_the_good_ones(tmp_path):
    shutil.copy(WEBAPP, tmp_path / "a-webapp.yaml")
    (tmp_path / "b-broken.yaml").write_text("pipeline:\n  name: broken\n  stages: [\n")
    (tmp_path / "c-other.yml").write_text(MINIMAL.format(name="other"))
    (tmp_path / "d-same-name.yaml").write_text(MINIMAL.format(name="webapp"))
    (tmp_path / "notes.txt").write_text("not a spec")
    (tmp_path / "ecs").mkdir()
    (tmp_path / "ecs" / "taskdef.yaml").write_text("family: web\n")  # subdirectories are not specs

    pipelines, errors = load_specs(tmp_path)
    assert [p.name for p in pipelines] == ["webapp", "other"]
    assert sorted(Path(f).name for f in errors) == ["b-broken.yaml", "d-same-name.yaml"]
    duplicate = errors[str(tmp_path / "d-same-name.yaml")]
    assert duplicate.line == 2 and duplicate.field == "name"
    assert f"pipeline name 'webapp' is already used by {tmp_path / 'a-webapp.yaml'}" in str(duplicate)


def test_load_spec_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_error_pickles():
    _, errors = parse_spec_text(MINIMAL.format(name="bad name") + "  execution_mode: SERIAL\n", "x.yaml")
    combined = SpecError.combine(errors)
    copy = pickle.loads(pickle.dumps(combined))
    assert str(copy) == str(combined) and len(copy.errors) == 2
