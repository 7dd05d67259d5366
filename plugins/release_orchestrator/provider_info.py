"""What Airflow's providers manager learns about this package when it is installed as a distribution.

pyproject.toml registers `get_provider_info` under the `apache_airflow_provider` entry point; the
shape is the one of the runtime schema (airflow/provider_info.schema.json), as in the amazon
provider's get_provider_info.py. "package-name" must equal the distribution's name. The webhook
plugin is registered on its own `airflow.plugins` entry point, so it is not listed under "plugins"
here (listed in both places, Airflow would load it twice and report the second as a duplicate).
The AWS hooks use the amazon provider's `aws` connection type and the GitHub hook Airflow's `http` one, so
there are no connection types here.
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
                "integration-name": "AWS Lambda",
                "external-doc-url": "https://aws.amazon.com/lambda/",
                "tags": ["aws"],
            },
            {
                "integration-name": "Amazon S3",
                "external-doc-url": "https://aws.amazon.com/s3/",
                "tags": ["aws"],
            },
            {
                "integration-name": "AWS CloudFormation",
                "external-doc-url": "https://aws.amazon.com/cloudformation/",
                "tags": ["aws"],
            },
            {
                "integration-name": "Amazon ECS",
                "external-doc-url": "https://aws.amazon.com/ecs/",
                "tags": ["aws"],
            },
            {
                "integration-name": "AWS Step Functions",
                "external-doc-url": "https://aws.amazon.com/step-functions/",
                "tags": ["aws"],
            },
            {
                "integration-name": "AWS Elastic Beanstalk",
                "external-doc-url": "https://aws.amazon.com/elasticbeanstalk/",
                "tags": ["aws"],
            },
            {
                "integration-name": "AWS CodeCommit",
                "external-doc-url": "https://aws.amazon.com/codecommit/",
                "tags": ["aws"],
            },
            {
                "integration-name": "Amazon CloudWatch",
                "external-doc-url": "https://aws.amazon.com/cloudwatch/",
                "tags": ["aws"],
            },
            {
                "integration-name": "GitHub",
                "external-doc-url": "https://docs.github.com/en/rest",
                "tags": ["software"],
            },
        ],
        "operators": [
            {
                "integration-name": "Release Orchestrator",
                "python-modules": [
                    f"{_PACKAGE}.operators.source",
                    f"{_PACKAGE}.operators.approval",
                    f"{_PACKAGE}.operators.stage_entry",
                    f"{_PACKAGE}.operators.stage_conditions",
                    f"{_PACKAGE}.operators.stage_rollback",
                ],
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
                "integration-name": "AWS Lambda",
                "python-modules": [f"{_PACKAGE}.operators.lambda_invoke"],
            },
            {
                "integration-name": "Amazon S3",
                "python-modules": [f"{_PACKAGE}.operators.s3_deploy"],
            },
            {
                "integration-name": "AWS CloudFormation",
                "python-modules": [f"{_PACKAGE}.operators.cloudformation"],
            },
            {
                "integration-name": "Amazon ECS",
                "python-modules": [f"{_PACKAGE}.operators.ecs"],
            },
            {
                "integration-name": "AWS Step Functions",
                "python-modules": [f"{_PACKAGE}.operators.stepfunctions"],
            },
            {
                "integration-name": "AWS Elastic Beanstalk",
                "python-modules": [f"{_PACKAGE}.operators.elasticbeanstalk"],
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
                "integration-name": "AWS CloudFormation",
                "python-modules": [f"{_PACKAGE}.hooks.cloudformation"],
            },
            {
                "integration-name": "Amazon ECS",
                "python-modules": [f"{_PACKAGE}.hooks.ecs"],
            },
            {
                "integration-name": "AWS Step Functions",
                "python-modules": [f"{_PACKAGE}.hooks.stepfunctions"],
            },
            {
                "integration-name": "AWS Elastic Beanstalk",
                "python-modules": [f"{_PACKAGE}.hooks.elasticbeanstalk"],
            },
            {
                "integration-name": "AWS CodeCommit",
                "python-modules": [f"{_PACKAGE}.hooks.codecommit"],
            },
            {
                "integration-name": "Amazon CloudWatch",
                "python-modules": [f"{_PACKAGE}.hooks.cloudwatch"],
            },
            {
                "integration-name": "GitHub",
                "python-modules": [f"{_PACKAGE}.hooks.github"],
            },
        ],
        "triggers": [
            {
                "integration-name": "Release Orchestrator",
                "python-modules": [
                    f"{_PACKAGE}.triggers.approval",
                    f"{_PACKAGE}.triggers.stage_entry",
                    f"{_PACKAGE}.triggers.stage_conditions",
                    f"{_PACKAGE}.triggers.stage_rollback",
                    f"{_PACKAGE}.events.trigger",
                ],
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
                "integration-name": "AWS CloudFormation",
                "python-modules": [f"{_PACKAGE}.triggers.cloudformation"],
            },
            {
                "integration-name": "Amazon ECS",
                "python-modules": [f"{_PACKAGE}.triggers.ecs"],
            },
            {
                "integration-name": "AWS Step Functions",
                "python-modules": [f"{_PACKAGE}.triggers.stepfunctions"],
            },
            {
                "integration-name": "AWS Elastic Beanstalk",
                "python-modules": [f"{_PACKAGE}.triggers.elasticbeanstalk"],
            },
        ],
        "notifications": [f"{_PACKAGE}.notifications.notifier.PipelineEventNotifier"],
        "extra-links": [
            f"{_PACKAGE}.links.CodeBuildBuildLink",
            f"{_PACKAGE}.links.CodeBuildLogsLink",
            f"{_PACKAGE}.links.CodeDeployDeploymentLink",
            f"{_PACKAGE}.links.LambdaFunctionLink",
            f"{_PACKAGE}.links.S3DeployLink",
            f"{_PACKAGE}.links.CloudFormationStackLink",
            f"{_PACKAGE}.links.EcsServiceDeploymentsLink",
            f"{_PACKAGE}.links.ElasticBeanstalkEnvironmentLink",
        ],
    }
