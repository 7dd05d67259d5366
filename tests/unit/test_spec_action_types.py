"""The action-type table: the keys other code relies on, and that a new type needs nothing but an entry."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from release_orchestrator.pipeline import action_types
from release_orchestrator.pipeline.action_types import ACTION_TYPES, CATEGORIES, KINDS, ActionType, ConfigKey
from release_orchestrator.pipeline.loader import parse_spec_text

ROOT = Path(__file__).resolve().parents[2]


def test_types_and_required_keys():
    required = {
        "source.github": ["repository", "branch"],
        "source.codecommit": ["repository", "branch"],
        "source.s3": ["bucket", "object_key"],
        "source.ecr": ["repository"],
        "build.codebuild": ["project_name"],
        "test.codebuild": ["project_name"],
        "approval.manual": [],
        "deploy.codedeploy": ["application_name", "deployment_group_name"],
        "deploy.s3": ["bucket_name"],
        "invoke.lambda": ["function_name"],
        "invoke.stepfunctions": ["state_machine_arn"],
        "deploy.elasticbeanstalk": ["application_name", "environment_name"],
        "deploy.cloudformation": ["action_mode", "stack_name"],
        "deploy.ecs": ["cluster_name", "service_name", "image_definitions"],
        "compute.commands": ["commands"],
    }
    assert {name: t.required_keys for name, t in ACTION_TYPES.items()} == required


def test_entries_are_consistent():
    for name, t in ACTION_TYPES.items():
        assert t.name == name and t.category in CATEGORIES and name.split(".")[0] == t.category.lower()
        assert len(set(t.allowed_keys)) == len(t.keys)
        assert all(k.kind in KINDS and k.description for k in t.keys)
        # Builds export variables; a function's outputVariables, a state machine's output object and a stack's
        # outputs give some too. Commands export only what their output_variables name.
        open_types = ("invoke.lambda", "invoke.stepfunctions", "deploy.cloudformation")
        assert t.outputs and t.open_outputs == (t.category in ("Build", "Test") or name in open_types)
        assert (t.outputs_key is not None) == (name == "compute.commands") and not (t.open_outputs and t.outputs_key)


def test_defaults():
    assert ACTION_TYPES["approval.manual"].with_defaults({}) == {
        "timeout": "7d",
        "allow_self_approval": False,
        "mode": "mark",
    }
    assert ACTION_TYPES["source.ecr"].with_defaults({"repository": "r"})["image_tag"] == "latest"
    assert ACTION_TYPES["test.codebuild"].with_defaults({})["fail_on_test_failure"] is True
    deploy = ACTION_TYPES["deploy.codedeploy"].with_defaults({"platform": "ecs"})
    assert deploy["platform"] == "ecs" and deploy["on_ready"] == "continue"


def test_a_new_type_is_one_entry(monkeypatch):
    new = ActionType(
        "deploy.lambda_invoke",
        "Deploy",
        "Invokes a function.",
        keys=(ConfigKey("function_name", "function", required=True),),
        outputs=("StatusCode",),
    )
    monkeypatch.setitem(action_types.ACTION_TYPES, new.name, new)
    spec = {
        "pipeline": {
            "name": "p",
            "stages": [
                {
                    "name": "S",
                    "actions": [
                        {
                            "name": "Invoke",
                            "type": "deploy.lambda_invoke",
                            "namespace": "Inv",
                            "configuration": {"function_name": "f"},
                        },
                        {
                            "name": "Approve",
                            "type": "approval.manual",
                            "run_order": 2,
                            "configuration": {"custom_data": "#{Inv.StatusCode} #{Inv.Nope}"},
                        },
                    ],
                }
            ],
        }
    }
    _, errors = parse_spec_text(yaml.safe_dump(spec))
    assert [e.message.split(":")[0] for e in errors] == ["#{Inv.Nope}"]


def test_docs_cover_every_type_and_key():
    docs = (ROOT / "docs" / "pipeline-spec.md").read_text()
    for t in ACTION_TYPES.values():
        assert f"`{t.name}`" in docs
        for k in t.keys:
            assert f"`{k.name}`" in docs, f"{t.name}.{k.name} is not documented"
        for output in t.outputs:
            assert f"`{output}`" in docs


def test_pipeline_modules_do_not_import_airflow():
    code = (
        "import sys, release_orchestrator.pipeline.loader, release_orchestrator.pipeline.api, "
        "release_orchestrator.pipeline.importer, release_orchestrator.__main__; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'airflow'], 'airflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": f"{ROOT}/plugins:{ROOT}"})


@pytest.mark.parametrize("name", sorted(ACTION_TYPES))
def test_every_action_type_names_an_operator_that_takes_what_the_compiler_passes(name):
    import inspect

    from airflow.sdk import BaseOperator

    action_type = ACTION_TYPES[name]
    choices = [None, *(action_type.operator_by[1] if action_type.operator_by else ())]
    for choice in choices:
        configuration = {action_type.operator_by[0]: choice} if choice else {}
        operator = action_type.operator_class(configuration)
        assert issubclass(operator, BaseOperator)
        accepted = {
            p for cls in operator.__mro__ if "__init__" in vars(cls) for p in inspect.signature(cls.__init__).parameters
        }
        wanted = set(action_type.fixed_kwargs)
        if action_type.uses_aws:
            wanted |= {"aws_conn_id", "region_name"}
        if action_type.polls:
            wanted.add("poll_interval")
        assert wanted <= accepted, f"{name}: {operator.__name__} does not take {sorted(wanted - accepted)}"


def test_approval_mode_picks_the_form_operator():
    approval = ACTION_TYPES["approval.manual"]
    assert approval.operator_class({"mode": "form"}).__name__ == "FormApprovalOperator"
    assert approval.operator_class({"mode": "mark"}).__name__ == "ManualApprovalOperator"
    assert approval.operator_class({}).__name__ == "ManualApprovalOperator"


def test_every_imported_provider_maps_through_a_method_of_the_importer():
    from release_orchestrator.pipeline.importer import _Importer

    providers = [p for t in ACTION_TYPES.values() for p in t.imported_from]
    assert len(providers) == len(set(providers)), "a CodePipeline provider maps to one type only"
    for t in ACTION_TYPES.values():
        for provider, method in t.imported_from.items():
            assert provider.count("/") == 2, provider
            assert provider.split("/")[0] == t.category, f"{t.name} imports {provider} of another category"
            assert callable(getattr(_Importer, method, None)), f"{t.name}: _Importer has no method {method}"
