"""Files a spec names live in the spec's folder: validate refuses any other, the compiler and the worker
check again before anything is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.api import action, pipeline, stage
from release_orchestrator.pipeline.errors import SpecError
from release_orchestrator.pipeline.files import SpecFileError
from release_orchestrator.pipeline.loader import load_spec, parse_spec_text
from tests.unit.rendering import render

TASKDEF = {"family": "web", "containerDefinitions": [{"name": "web", "image": "<IMAGE1_NAME>"}]}
SPEC = """\
pipeline:
  name: files
  stages:
    - name: Deploy
      actions:
        - name: ECS
          type: deploy.codedeploy
          configuration:
            application_name: webapp-ecs
            deployment_group_name: production
            platform: ecs
            task_definition_template: {path}
            container_name: web
            container_port: 8080
            image: webapp:1.2.3
"""


@pytest.fixture
def folders(tmp_path):
    """The spec's folder (with ecs/taskdef.json) and a folder beside it with a file it must not read."""
    specs, outside = tmp_path / "specs", tmp_path / "outside"
    (specs / "ecs").mkdir(parents=True)
    outside.mkdir()
    (specs / "ecs" / "taskdef.json").write_text(json.dumps(TASKDEF))
    (outside / "secret.json").write_text(json.dumps({"family": "stolen"}))
    return specs, outside


def spec_errors(folder: Path, path: str) -> list[SpecError]:
    spec_file = folder / "files.yaml"
    spec_file.write_text(SPEC.format(path=json.dumps(path)))
    return parse_spec_text(spec_file.read_text(), str(spec_file))[1]


def the_error(folder: Path, path: str) -> str:
    errors = spec_errors(folder, path)
    assert len(errors) == 1, errors
    error = errors[0]
    assert (error.stage, error.action, error.field) == ("Deploy", "ECS", "configuration.task_definition_template")
    assert str(folder / "files.yaml") in str(error) and f"'{path}'" in str(error)
    return error.message


def test_a_file_in_the_spec_folder_is_read(folders):
    specs, _ = folders
    for path in ("ecs/taskdef.json", "./ecs/../ecs/taskdef.json"):
        assert spec_errors(specs, path) == []
        task = render(compiler.build_dag(load_spec(specs / "files.yaml")), "Deploy.ECS")[0]
        assert task.task_definition()["containerDefinitions"][0]["image"] == "webapp:1.2.3"


def test_absolute_paths_are_refused(folders):
    specs, outside = folders
    assert "absolute path" in the_error(specs, str(outside / "secret.json"))
    assert "absolute path" in the_error(specs, "/etc/passwd")


def test_dot_dot_escapes_are_refused(folders):
    specs, _ = folders
    assert "outside the spec's folder" in the_error(specs, "../outside/secret.json")
    assert "outside the spec's folder" in the_error(specs, "ecs/../../../../../../etc/passwd")


def test_links_leaving_the_folder_are_refused(folders):
    specs, outside = folders
    (specs / "taskdef.json").symlink_to(outside / "secret.json")
    (specs / "shared").symlink_to(outside, target_is_directory=True)
    assert "symbolic link" in the_error(specs, "taskdef.json")
    assert "symbolic link" in the_error(specs, "shared/secret.json")
    # A link that stays inside is fine.
    (specs / "current.json").symlink_to(specs / "ecs" / "taskdef.json")
    assert spec_errors(specs, "current.json") == []


def test_references_in_file_paths_are_refused(folders):
    specs, _ = folders
    assert "#{...} references" in the_error(specs, "ecs/#{codepipeline.PipelineExecutionId}.json")


def python_pipeline(template="ecs/taskdef.json", **fields):
    return pipeline(
        "python-files",
        stages=[
            stage(
                "Deploy",
                [
                    action(
                        "ECS",
                        "deploy.codedeploy",
                        application_name="a",
                        deployment_group_name="g",
                        platform="ecs",
                        task_definition_template=template,
                        container_name="web",
                        container_port=8080,
                        image="webapp:2",
                    )
                ],
            )
        ],
        **fields,
    )


def test_inline_templates_need_no_folder():
    task = render(compiler.build_dag(python_pipeline(json.dumps(TASKDEF))), "Deploy.ECS")[0]
    assert task.task_definition()["containerDefinitions"][0]["image"] == "webapp:2"


def test_python_pipelines_name_files_beside_their_source_file(folders):
    specs, _ = folders
    with pytest.raises(SpecError, match="not read from a spec file.*source_file") as error:
        python_pipeline()
    assert error.value.field == "configuration.task_definition_template"
    task = render(compiler.build_dag(python_pipeline(source_file=str(specs / "pipelines.py"))), "Deploy.ECS")[0]
    assert task.task_definition()["containerDefinitions"][0]["image"] == "webapp:2"


def test_the_worker_checks_again_before_reading(folders):
    """A link swapped in after the DAG was parsed is refused where the file is read."""
    specs, outside = folders
    assert spec_errors(specs, "ecs/taskdef.json") == []
    task = render(compiler.build_dag(load_spec(specs / "files.yaml")), "Deploy.ECS")[0]
    os.remove(specs / "ecs" / "taskdef.json")
    (specs / "ecs" / "taskdef.json").symlink_to(outside / "secret.json")
    with pytest.raises(SpecFileError, match="task_definition_template: .*symbolic link"):
        task.task_definition()


def test_the_compiler_refuses_what_validate_refuses(folders):
    specs, _ = folders
    spec = python_pipeline(source_file=str(specs / "pipelines.py"))
    spec.stages[0].actions[0].configuration["task_definition_template"] = "../outside/secret.json"
    with pytest.raises(SpecFileError, match="outside the spec's folder"):
        compiler.build_dag(spec)
