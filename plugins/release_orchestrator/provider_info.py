"""What Airflow's providers manager learns about this package when it is installed as a distribution.

pyproject.toml registers `get_provider_info` under the `apache_airflow_provider` entry point; the
shape is the one of the runtime schema (airflow/provider_info.schema.json), as in the amazon
provider's get_provider_info.py. "package-name" must equal the distribution's name. The webhook
plugin is registered on its own `airflow.plugins` entry point, so it is not listed under "plugins"
here (listed in both places, Airflow would load it twice and report the second as a duplicate).
The hooks use the amazon provider's `aws` connection type, so there are no connection types here.
"""

from __future__ import annotations

__version__ = "0.1.0"

_PACKAGE = "release_orchestrator"


def get_provider_info() -> dict:
    return {
        "package-name": "release-orchestrator",
        "name": "Release Orchestrator",
        "description": (
            "AWS CodePipeline's model of releases (pipelines, stages, actions, approvals, variables, "
            "notifications) running as Apache Airflow 3 DAGs.\n"
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Release Orchestrator",
                "tags": ["aws", "software"],
            },
            {
                "integration-name": "AWS CodeBuild",
                "external-doc-url": "https://aws.amazon.com/codebuild/",
                "tags": ["aws"],
            },
            {
                "integration-name": "AWS CodeDeploy",
                "external-doc-url": "https://aws.amazon.com/codedeploy/",
                "tags": ["aws"],
            },
            {
                "integration-name": "Amazon ECS",
                "external-doc-url": "https://aws.amazon.com/ecs/",
                "tags": ["aws"],
            },
        ],
        "operators": [
            {
                "integration-name": "Release Orchestrator",
                "python-modules": [f"{_PACKAGE}.operators.source", f"{_PACKAGE}.operators.approval"],
            },
            {
                "integration-name": "AWS CodeBuild",
                "python-modules": [f"{_PACKAGE}.operators.codebuild", f"{_PACKAGE}.operators.commands"],
            },
            {
                "integration-name": "AWS CodeDeploy",
                "python-modules": [f"{_PACKAGE}.operators.codedeploy"],
            },
            {
                "integration-name": "Amazon ECS",
                "python-modules": [f"{_PACKAGE}.operators.ecs"],
            },
        ],
        "hooks": [
            {
                "integration-name": "AWS CodeBuild",
                "python-modules": [f"{_PACKAGE}.hooks.codebuild"],
            },
            {
                "integration-name": "AWS CodeDeploy",
                "python-modules": [f"{_PACKAGE}.hooks.codedeploy"],
            },
            {
                "integration-name": "Amazon ECS",
                "python-modules": [f"{_PACKAGE}.hooks.ecs"],
            },
        ],
        "triggers": [
            {
                "integration-name": "Release Orchestrator",
                "python-modules": [f"{_PACKAGE}.triggers.approval", f"{_PACKAGE}.events.trigger"],
            },
            {
                "integration-name": "AWS CodeBuild",
                "python-modules": [f"{_PACKAGE}.triggers.codebuild"],
            },
            {
                "integration-name": "AWS CodeDeploy",
                "python-modules": [f"{_PACKAGE}.triggers.codedeploy"],
            },
            {
                "integration-name": "Amazon ECS",
                "python-modules": [f"{_PACKAGE}.triggers.ecs"],
            },
        ],
        "notifications": [f"{_PACKAGE}.notifications.notifier.PipelineEventNotifier"],
        "extra-links": [
            f"{_PACKAGE}.links.CodeBuildBuildLink",
            f"{_PACKAGE}.links.CodeBuildLogsLink",
            f"{_PACKAGE}.links.CodeDeployDeploymentLink",
            f"{_PACKAGE}.links.EcsServiceDeploymentsLink",
        ],
    }
