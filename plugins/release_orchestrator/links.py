"""Console links shown on the AWS actions' tasks (the provider's BaseAwsLink pattern).

Step Functions tasks use the provider's own StateMachineExecutionsDetailsLink.
"""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class CodeBuildBuildLink(BaseAwsLink):
    """The build's page in the CodeBuild console."""

    name = "CodeBuild build"
    key = "_codebuild_build"
    format_str = (
        BASE_AWS_CONSOLE_LINK + "/codesuite/codebuild/projects/{project_name}/build/{build_id}/?region={region_name}"
    )

    def format_link(self, *, build_id: str | None = None, project_name: str | None = None, **kwargs) -> str:
        if not build_id or not project_name:
            return ""
        return super().format_link(build_id=quote(build_id, safe=""), project_name=quote(project_name), **kwargs)


class CodeBuildLogsLink(BaseAwsLink):
    """The build's log stream in CloudWatch Logs."""

    name = "CodeBuild logs"
    key = "_codebuild_logs"
    format_str = (
        BASE_AWS_CONSOLE_LINK
        + "/cloudwatch/home?region={region_name}#logsV2:log-groups/log-group/{log_group}/log-events/{log_stream}"
    )

    def format_link(self, *, log_group: str | None = None, log_stream: str | None = None, **kwargs) -> str:
        if not log_group or not log_stream:
            return ""
        return super().format_link(log_group=quote_plus(log_group), log_stream=quote_plus(log_stream), **kwargs)


class CodeDeployDeploymentLink(BaseAwsLink):
    """The deployment's page in the CodeDeploy console."""

    name = "CodeDeploy deployment"
    key = "_codedeploy_deployment"
    format_str = BASE_AWS_CONSOLE_LINK + "/codesuite/codedeploy/deployments/{deployment_id}?region={region_name}"

    def format_link(self, *, deployment_id: str | None = None, **kwargs) -> str:
        if not deployment_id:
            return ""
        return super().format_link(deployment_id=quote(deployment_id, safe=""), **kwargs)


class S3DeployLink(BaseAwsLink):
    """The folder a deploy.s3 action put its objects in, in the S3 console."""

    name = "S3 objects"
    key = "_s3_deploy_objects"
    format_str = BASE_AWS_CONSOLE_LINK + "/s3/buckets/{bucket}?region={region_name}&prefix={prefix}"

    def format_link(self, *, bucket: str | None = None, prefix: str = "", **kwargs) -> str:
        if not bucket:
            return ""
        return super().format_link(bucket=quote(bucket, safe=""), prefix=quote(prefix, safe=""), **kwargs)


class LambdaFunctionLink(BaseAwsLink):
    """The invoked function's page in the Lambda console."""

    name = "Lambda function"
    key = "_lambda_function"
    format_str = BASE_AWS_CONSOLE_LINK + "/lambda/home?region={region_name}#/functions/{function_name}"

    def format_link(self, *, function_name: str | None = None, **kwargs) -> str:
        if not function_name:
            return ""
        # A name, name:qualifier, account:function:name[:qualifier] or an ARN: the page is the function's.
        name = function_name.split(":function:")[-1].split(":")[0]
        return super().format_link(function_name=quote(name, safe=""), **kwargs)


class ElasticBeanstalkEnvironmentLink(BaseAwsLink):
    """The environment's page in the Elastic Beanstalk console."""

    name = "Elastic Beanstalk environment"
    key = "_elasticbeanstalk_environment"
    format_str = (
        BASE_AWS_CONSOLE_LINK
        + "/elasticbeanstalk/home?region={region_name}#/environment/dashboard?environmentId={environment_id}"
    )

    def format_link(self, *, environment_id: str | None = None, **kwargs) -> str:
        if not environment_id:
            return ""
        return super().format_link(environment_id=quote(environment_id, safe=""), **kwargs)


class CloudFormationStackLink(BaseAwsLink):
    """The stack's page in the CloudFormation console."""

    name = "CloudFormation stack"
    key = "_cloudformation_stack"
    format_str = (
        BASE_AWS_CONSOLE_LINK + "/cloudformation/home?region={region_name}#/stacks/stackinfo?stackId={stack_id}"
    )

    def format_link(self, *, stack_id: str | None = None, **kwargs) -> str:
        if not stack_id:
            return ""
        return super().format_link(stack_id=quote(stack_id, safe=""), **kwargs)


class EcsServiceDeploymentsLink(BaseAwsLink):
    """The service's deployments in the ECS console."""

    name = "ECS service deployments"
    key = "_ecs_service_deployments"
    format_str = (
        BASE_AWS_CONSOLE_LINK
        + "/ecs/v2/clusters/{cluster_name}/services/{service_name}/deployments?region={region_name}"
    )

    def format_link(self, *, cluster_name: str | None = None, service_name: str | None = None, **kwargs) -> str:
        if not cluster_name or not service_name:
            return ""
        return super().format_link(
            cluster_name=quote(cluster_name, safe=""), service_name=quote(service_name, safe=""), **kwargs
        )
