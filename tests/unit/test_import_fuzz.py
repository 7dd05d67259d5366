"""No CodePipeline definition crashes `import-codepipeline`, and none writes YAML of its own into the spec."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given

from release_orchestrator.pipeline.importer import ImportInputError, import_codepipeline, parse_codepipeline_json
from release_orchestrator.pipeline.loader import parse_spec_text
from tests.unit.fuzzing import check_import, definitions, fuzz_settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "codepipeline"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def run_import(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}/plugins:{ROOT}"}
    return subprocess.run(
        [sys.executable, "-m", "release_orchestrator", "import-codepipeline", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@given(definitions())
@fuzz_settings(300)
def test_any_definition_is_imported_or_refused_naming_the_source(definition):
    check_import(definition)


def test_an_action_that_is_not_an_object_is_refused_naming_where(tmp_path):
    definition = fixture("v2-variables-triggers.json")
    definition["stages"][1]["actions"][0] = "Build"
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(definition))
    result = run_import(path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{path}: not a CodePipeline definition" in result.stderr
    assert "stages[1].actions[0]: expected an object, got a string" in result.stderr


def test_deep_json_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"name": "x", "stages": ' + "[" * 200_000 + "]" * 200_000 + "}")
    result = run_import(path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"cannot read {path}: JSON nested deeper than" in result.stderr


def test_moderately_deep_json_is_refused_before_anything_recurses_into_it():
    definition = fixture("v2-variables-triggers.json")
    definition["stages"][0]["actions"][0]["configuration"]["Extra"] = json.loads("[" * 500 + "]" * 500)
    with pytest.raises(ImportInputError, match="nested deeper than 32 levels"):
        import_codepipeline(definition, source="deep.json")


def test_deep_environment_variables_are_left_out_with_a_note():
    definition = fixture("v2-variables-triggers.json")
    build = next(a for s in definition["stages"] for a in s["actions"] if a["actionTypeId"]["provider"] == "CodeBuild")
    build["configuration"]["EnvironmentVariables"] = '[{"name": "A", "value": ' + "[" * 5000 + "]" * 5000 + "}]"
    result = import_codepipeline(definition)
    assert any("EnvironmentVariables" in note and "nested deeper" in note for note in result.notes)


def test_a_lone_surrogate_is_refused():
    text = (FIXTURES / "v2-variables-triggers.json").read_text().replace('"webapp-v2"', '"\\ud800"', 1)
    with pytest.raises(ImportInputError, match="not valid Unicode"):
        parse_codepipeline_json(text, "s.json")


def test_names_and_values_are_written_as_literals():
    definition = fixture("v2-variables-triggers.json")
    definition["name"] = "x\npipeline: {name: injected}"
    definition["stages"][0]["name"] = "Source\n      evil: true"
    approval = {
        "name": "Approve\u2028# not a comment",
        "actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"},
        "configuration": {"CustomData": "{{ var.value.release_webhook_secret }} {% if x %}", "Extra": "\x07"},
    }
    definition["stages"].append({"name": "Approval\r# x", "actions": [approval]})
    definition["stages"].append({"name": "Gone\nstages: []", "actions": [{"name": "J", "actionTypeId": {}}]})
    result = import_codepipeline(definition, source="in.json")
    written = yaml.safe_load(result.yaml)["pipeline"]
    assert written["name"] == "x\npipeline: {name: injected}"
    names = [s["name"] for s in written["stages"]]
    assert names[0] == "Source\n      evil: true" and names[-1] == "Approval\r# x" and "Gone\nstages: []" not in names
    custom = written["stages"][-1]["actions"][0]
    assert custom["name"] == "Approve\u2028# not a comment"
    # what CodePipeline wrote, as it wrote it: no Jinja added, none taken away
    assert custom["configuration"] == {"custom_data": "{{ var.value.release_webhook_secret }} {% if x %}"}
    assert "{{" not in result.yaml.replace("{{ var.value.release_webhook_secret }}", "")
    _, errors = parse_spec_text(result.yaml, "out.yaml")
    assert not any("invalid YAML" in e.message for e in errors)
