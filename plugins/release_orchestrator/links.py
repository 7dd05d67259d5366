"""Console links shown on CodeBuild, CodeDeploy and ECS tasks (the provider's BaseAwsLink pattern)."""

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
