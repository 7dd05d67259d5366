"""`python -m release_orchestrator`: its commands, their output and exit codes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}/plugins:{ROOT}"}
    return subprocess.run(
        [sys.executable, "-m", "release_orchestrator", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def test_full_import_exits_0_and_writes_a_spec_that_validates(tmp_path):
    out = tmp_path / "webapp.yaml"
    result = run("import-codepipeline", FIXTURES / "codepipeline" / "v1-wrapped.json", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Airflow connections to create:\n" in result.stderr
    assert "  aws_productiondeployrole: assumes arn:aws:iam::222222222222:role/ProductionDeployRole" in result.stderr
    check = run("validate", out)
    assert check.returncode == 0 and "ok:" in check.stdout


def test_import_to_stdout():
    result = run("import-codepipeline", FIXTURES / "codepipeline" / "v2-variables-triggers.json")
    assert result.returncode == 0 and "\npipeline:\n  name: webapp-v2\n" in result.stdout


def test_partial_import_exits_3_and_lists_what_was_not_imported(tmp_path):
    out = tmp_path / "infra.yaml"
    result = run("import-codepipeline", FIXTURES / "codepipeline" / "unsupported.json", "-o", out)
    assert result.returncode == 3
    assert "Not imported:\n  stage 'Build', action 'JenkinsBuild' (Build/Custom/Jenkins v1):" in result.stderr
    assert "stage 'Infrastructure', action 'DeployStackSet' (Deploy/AWS/CloudFormationStackSet v1)" in result.stderr
    assert run("validate", out).returncode == 0


def test_unreadable_input_exits_1(tmp_path):
    result = run("import-codepipeline", tmp_path / "missing.json")
    assert result.returncode == 1 and f"cannot read {tmp_path / 'missing.json'}" in result.stderr


def test_validate_prints_every_error_and_exits_1(tmp_path):
    (tmp_path / "good.yaml").write_text((FIXTURES / "specs" / "webapp.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("pipeline:\n  name: bad\n  execution_mode: SERIAL\n  stages: []\n")
    result = run("validate", tmp_path)
    assert result.returncode == 1
    assert f"ok: {tmp_path / 'good.yaml'}: pipeline 'webapp'" in result.stdout
    assert f"{tmp_path / 'bad.yaml'}:3: field 'execution_mode': unknown execution mode" in result.stderr
    assert f"{tmp_path / 'bad.yaml'}:4: field 'stages': a pipeline needs 1 to 50 stages" in result.stderr


def test_action_types_reference():
    result = run("action-types")
    assert result.returncode == 0 and "### `deploy.codedeploy` (Deploy)" in result.stdout


def test_help_lists_every_command_and_each_command_runs():
    from release_orchestrator.settings import markdown_table

    help_text = run("--help").stdout
    commands = ["validate", "import-codepipeline", "action-types", "schema", "settings", "events-setup"]
    for command in commands:
        assert re.search(rf"^ *{command} ", help_text, re.MULTILINE), f"{command} is not in the command table"
        assert run(command, "--help").returncode == 0, command
    assert markdown_table() in run("settings").stdout
    dry_run = run("events-setup", "--dry-run", ROOT / "include" / "pipelines")
    assert dry_run.returncode == 0 and "nothing to set up" in dry_run.stdout


@pytest.mark.parametrize(
    "fixture, written, said",
    [
        ("static-site-lambda.json", ["type: deploy.s3", "type: invoke.lambda"], []),
        ("stepfunctions-beanstalk.json", ["type: invoke.stepfunctions", "type: deploy.elasticbeanstalk"], []),
        ("ecs-rolling-commands.json", ["type: deploy.ecs", "type: compute.commands"], []),
        # The templates are files of the CodeCommit source's artifact, read when the run gets there.
        ("cloudformation.json", ["type: deploy.cloudformation", "template: SourceArtifact::infra/webapp.yaml"], []),
    ],
)
def test_the_catalogues_providers_import_with_exit_0_and_validate(tmp_path, fixture, written, said):
    out = tmp_path / "imported.yaml"
    result = run("import-codepipeline", FIXTURES / "codepipeline" / fixture, "-o", out)
    assert result.returncode == 0, result.stderr
    assert all(text in out.read_text() for text in written)
    assert all(text in result.stderr for text in said)
    check = run("validate", out)
    assert check.returncode == 0 and "ok:" in check.stdout, check.stdout + check.stderr
