"""Secrets in CodeBuild environment variables: a spec may not pass one as PLAINTEXT, and a secret-looking
value never reaches the Rendered Template view."""

from __future__ import annotations

import pytest
import yaml
from airflow.sdk import DAG

from release_orchestrator.operators.codebuild import CodeBuildOperator
from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.action_types import secret_word
from release_orchestrator.pipeline.loader import parse_spec_text
from tests.unit.rendering import render


def build_spec(environment_variables) -> str:
    return yaml.safe_dump(
        {
            "pipeline": {
                "name": "secrets",
                "stages": [
                    {
                        "name": "Build",
                        "actions": [
                            {
                                "name": "Compile",
                                "type": "build.codebuild",
                                "configuration": {
                                    "project_name": "webapp-build",
                                    "environment_variables": environment_variables,
                                },
                            }
                        ],
                    }
                ],
            }
        }
    )


def errors_of(environment_variables):
    return parse_spec_text(build_spec(environment_variables), "secrets.yaml")[1]


@pytest.mark.parametrize(
    ("variables", "field", "name"),
    [
        ([{"name": "DB_PASSWORD", "value": "hunter2"}], "environment_variables[0]", "DB_PASSWORD"),
        (
            [{"name": "IMAGE", "value": "x"}, {"name": "github_token", "value": "ghp_x", "type": "PLAINTEXT"}],
            "environment_variables[1]",
            "github_token",
        ),
        ({"stripeApiKey": "sk_live_x"}, "environment_variables.stripeApiKey", "stripeApiKey"),
        ({"CLIENT_SECRETS": "x"}, "environment_variables.CLIENT_SECRETS", "CLIENT_SECRETS"),
        ([{"name": "DEPLOY-PRIVATE-KEY", "value": "-----BEGIN"}], "environment_variables[0]", "DEPLOY-PRIVATE-KEY"),
        ([{"name": "AwsCredentials", "value": "#{variables.x}"}], "environment_variables[0]", "AwsCredentials"),
    ],
)
def test_plaintext_secrets_are_refused(variables, field, name):
    errors = [e for e in errors_of(variables) if "looks like a secret" in e.message]
    assert len(errors) == 1, errors_of(variables)
    error = errors[0]
    assert (error.stage, error.action, error.field) == ("Build", "Compile", f"configuration.{field}")
    assert error.message.startswith(f"{name} looks like a secret")
    assert "PARAMETER_STORE" in error.message and "SECRETS_MANAGER" in error.message
    assert "secrets.yaml" in str(error)


def test_secrets_from_parameter_store_or_secrets_manager_and_other_names_are_fine():
    assert (
        errors_of(
            [
                {"name": "DB_PASSWORD", "value": "/webapp/db-password", "type": "PARAMETER_STORE"},
                {"name": "GITHUB_TOKEN", "value": "webapp/github", "type": "SECRETS_MANAGER"},
                {"name": "TOKENIZER_PATH", "value": "models/t"},
                {"name": "PWD", "value": "/src"},
                {"name": "AWS_ACCESS_KEY_ID_NAME", "value": "x"},
                {"name": "KEYBOARD", "value": "x"},
            ]
        )
        == []
    )


def test_secret_words_are_word_parts_of_the_name():
    assert [secret_word(n) for n in ("DB_PASSWORD", "dbPassword", "API_KEY", "APIKey", "npm-tokens")] == [
        "password",
        "password",
        "api_key",
        "api_key",
        "token",
    ]
    assert [secret_word(n) for n in ("TOKENIZER", "SECRETARY", "PASSWORDLESS_LOGIN", "KEY")] == [None] * 4


def test_secret_values_are_masked_in_the_rendered_view():
    """A DAG written in Python may still pass one (validate only reads specs): the view Airflow stores
    right after rendering, before the task runs, shows it masked."""
    with DAG("python-secrets", schedule=None, auto_register=False) as dag:
        CodeBuildOperator(
            task_id="build",
            project_name="webapp-build",
            environment_variables=[
                {"name": "DB_PASSWORD", "value": "hunter2-db-password"},
                {"name": "DeployApiKey", "value": "key-9f8e7d6c5b4a"},
                {"name": "PUBLIC_URL", "value": "https://webapp.example.com"},
            ],
        )
    task, view = render(dag, "build")
    assert task.environment_variables[0]["value"] == "hunter2-db-password"  # the build still gets it
    shown = repr(view)
    assert "hunter2-db-password" not in shown and "key-9f8e7d6c5b4a" not in shown
    assert "https://webapp.example.com" in shown


def test_values_airflow_calls_secret_are_masked_in_a_compiled_spec():
    spec, errors = parse_spec_text(build_spec([{"name": "OAUTHTOKEN", "value": "oauth-3b9c1d"}]), "secrets.yaml")
    assert errors == []  # one word: not refused, but Airflow's masker knows 'token'
    _, view = render(compiler.build_dag(spec), "Build.Compile")
    assert "oauth-3b9c1d" not in repr(view)
