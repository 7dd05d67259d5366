"""Preflight: look up, before a run, every AWS resource a pipeline's actions name.

`plan(pipeline)` lists the checks (no AWS call): the connections' credentials, then for each action the
resources its action type declares (`ActionType.resources` in the registry), then the notifications topic
and the artifact store's bucket.
`run_checks(checks, access)` makes them, one row each; `table` and `as_json` show the rows. Used by
`python -m release_orchestrator check` and by the `Preflight.Check` task of a spec with `preflight: true`
(operators/preflight.py), so both check the same things.

How each kind of resource is looked up is in CHECKERS below: an action type names resources by kind, and a
kind is checked the same way whichever type names it. Next to each checker are the IAM permissions its calls
need, which `iam-policy` grants for a spec with `preflight: true` (`check_permissions`). A name holding a
`#{...}` reference is known only when the run gets there: its row says "skipped (reference)".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from .action_types import ACTION_TYPES, PLATFORM_NAMES, Permission, function_arn, regional_arn
from .model import Pipeline
from .syntax import did_you_mean, has_reference

PASS, FAIL, SKIPPED_REFERENCE = "pass", "FAIL", "skipped (reference)"
NOWHERE = "-"  # the stage and action of checks that belong to no action (credentials, notifications)


@dataclass(frozen=True)
class PlannedCheck:
    stage: str
    action: str
    kind: str
    name: Any
    details: dict[str, Any] = field(default_factory=dict)
    region: str | None = None
    aws_conn_id: str | None = None


@dataclass(frozen=True)
class Row:
    stage: str
    action: str
    resource: str
    result: str
    reason: str = ""


class Access(Protocol):
    """Where the checks get their boto3 clients: an Airflow connection's hook, or boto3 on an endpoint."""

    def client(self, service: str, region: str | None, aws_conn_id: str | None) -> Any: ...

    def connection(self, aws_conn_id: str | None) -> tuple[str, str | None]:
        """(how to name the credentials in the table, the role they assume or None)."""
        ...


class HookAccess:
    """Clients from the amazon provider's AwsBaseHook: the connection's credentials, role, region, endpoint."""

    def __init__(self) -> None:
        self._hooks: dict[tuple, Any] = {}

    def _hook(self, service: str, region: str | None, aws_conn_id: str | None) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        key = (service, region, aws_conn_id)
        if key not in self._hooks:
            self._hooks[key] = AwsBaseHook(aws_conn_id=aws_conn_id, region_name=region, client_type=service)
        return self._hooks[key]

    def client(self, service: str, region: str | None, aws_conn_id: str | None) -> Any:
        return self._hook(service, region, aws_conn_id).conn

    def connection(self, aws_conn_id: str | None) -> tuple[str, str | None]:
        role = self._hook("sts", None, aws_conn_id).conn_config.role_arn
        return f"connection {aws_conn_id}", role


class Boto3Access:
    """Plain boto3 clients (boto3's own credentials) on `endpoint_url`, as `events-setup` makes them; the
    spec's connection ids are not read."""

    def __init__(self, endpoint_url: str | None = None, default_region: str | None = None) -> None:
        from release_orchestrator.events.setup import boto3_clients

        self._make = boto3_clients(endpoint_url, default_region)
        self._clients: dict[tuple, Any] = {}

    def client(self, service: str, region: str | None, aws_conn_id: str | None) -> Any:
        if (service, region) not in self._clients:
            self._clients[service, region] = self._make(service, region)
        return self._clients[service, region]

    def connection(self, aws_conn_id: str | None) -> tuple[str, str | None]:
        return "boto3 credentials", None


# --- what to check ------------------------------------------------------------------------------------------


def plan(pipeline: Pipeline, aws_conn_id: str | None = None, region: str | None = None) -> list[PlannedCheck]:
    """The checks of `pipeline`. `aws_conn_id` and `region` stand in for the pipeline's connection and region
    where the spec leaves them open (an action's own connection or region always wins)."""
    default_conn = aws_conn_id or pipeline.aws_conn_id
    default_region = pipeline.region or region
    checks: list[PlannedCheck] = []
    for stage in pipeline.stages:
        for action in stage.actions:
            action_type = ACTION_TYPES.get(action.type)
            if action_type is None or action_type.resources is None:
                continue
            for resource in action_type.resources(action_type.with_defaults(action.configuration)):
                checks.append(
                    PlannedCheck(
                        stage.name,
                        action.name,
                        resource.kind,
                        resource.name,
                        dict(resource.details),
                        action.region or default_region,
                        action.aws_conn_id or default_conn,
                    )
                )
    if pipeline.notifications and pipeline.notifications.topic_arn:
        conn = pipeline.notifications.aws_conn_id or default_conn
        checks.append(
            PlannedCheck(NOWHERE, "notifications", "sns_topic", pipeline.notifications.topic_arn, {}, None, conn)
        )
    store = pipeline.artifact_store
    stores = store if isinstance(store, dict) else {default_region: store}  # region -> s3://bucket/prefix
    for region, uri in stores.items():
        if isinstance(uri, str) and uri.startswith("s3://"):
            bucket = uri[len("s3://") :].split("/", 1)[0]
            checks.append(PlannedCheck(NOWHERE, "artifact_store", "s3_bucket", bucket, {}, region, default_conn))
    connections = dict.fromkeys(c.aws_conn_id for c in checks)  # in order of first use
    credentials = [
        PlannedCheck(NOWHERE, NOWHERE, "credentials", conn, {}, default_region, conn) for conn in connections
    ]
    return credentials + checks


# --- how to check each kind ---------------------------------------------------------------------------------

Checker = Callable[[Any, PlannedCheck], tuple[str, str]]  # (access, check) -> (result, reason)
# The permissions a checker's calls need for one check; each returns only those of the calls it makes.
CheckPermissions = Callable[[PlannedCheck], list[Permission]]


def _error_code(err: Exception) -> str | None:
    return getattr(err, "code", None)


def _call(operation: str, resource: str, call: Callable[[], Any]) -> Any:
    from release_orchestrator.hooks.base import aws_call

    with aws_call(operation, resource):
        return call()


def _credentials(access: Access, check: PlannedCheck) -> tuple[str, str]:
    label, role = access.connection(check.aws_conn_id)
    sts = access.client("sts", check.region, check.aws_conn_id)
    # With a role_arn the hook's session assumes the role first, so this call fails when it cannot be assumed.
    what = f"{label} (role {role})" if role else label
    identity = _call("GetCallerIdentity", what, sts.get_caller_identity)
    assumed = f"; role {role} assumed" if role else ""
    return PASS, f"account {identity.get('Account')} as {identity.get('Arn')}{assumed}"


def _credentials_permissions(check: PlannedCheck) -> list[Permission]:
    # GetCallerIdentity needs no permission (AWS answers it even when a policy denies it); assuming the
    # connection's role is sts:AssumeRole on a role no spec names, granted with the connection (docs/real-aws.md).
    return []


def _codebuild_project(access: Access, check: PlannedCheck) -> tuple[str, str]:
    codebuild = access.client("codebuild", check.region, check.aws_conn_id)
    found = _call(
        "BatchGetProjects", f"project '{check.name}'", lambda: codebuild.batch_get_projects(names=[check.name])
    )
    if found.get("projects"):
        return PASS, ""
    names = _call("ListProjects", "projects", lambda: codebuild.list_projects().get("projects", []))
    return FAIL, f"BatchGetProjects: no project '{check.name}'{did_you_mean(check.name, names)}"


def _codebuild_project_permissions(check: PlannedCheck) -> list[Permission]:
    return [
        Permission(
            "codebuild",
            ("codebuild:BatchGetProjects",),
            regional_arn("codebuild", f"project/{check.name}"),
            "PreflightReadsTheCodeBuildProjects",
        ),
        Permission(
            "codebuild",
            ("codebuild:ListProjects",),
            "*",
            "PreflightListsCodeBuildProjectsToSuggestANameNoResourceScope",
        ),
    ]


def _codedeploy_group(access: Access, check: PlannedCheck) -> tuple[str, str]:
    codedeploy = access.client("codedeploy", check.region, check.aws_conn_id)
    application, group, platform = check.name, check.details.get("group"), check.details.get("platform", "server")
    config = check.details.get("config")
    expected = PLATFORM_NAMES.get(platform, platform)

    def look_up(operation: str, what: str, read: Callable[[], dict]) -> tuple[dict, str | None]:
        """What `read` finds (or the AWS error it raises), and why it is on the wrong platform, if it is."""
        info = _call(operation, what, read)
        found = info.get("computePlatform")
        if found in (None, expected):
            return info, None
        return (
            info,
            f"{operation}: {what} is on compute platform {found}, the action says platform {platform} ({expected})",
        )

    _, wrong = look_up(
        "GetApplication",
        f"application '{application}'",
        lambda: codedeploy.get_application(applicationName=application)["application"],
    )
    if wrong:
        return FAIL, wrong
    if has_reference(group):
        return SKIPPED_REFERENCE, f"application found; deployment group {group} is known only at run time"
    info, wrong = look_up(
        "GetDeploymentGroup",
        f"deployment group '{application}/{group}'",
        lambda: codedeploy.get_deployment_group(applicationName=application, deploymentGroupName=group)[
            "deploymentGroupInfo"
        ],
    )
    if wrong:
        return FAIL, wrong
    style = (info.get("deploymentStyle") or {}).get("deploymentType")
    if platform == "ecs" and style != "BLUE_GREEN":
        return FAIL, f"GetDeploymentGroup: group '{application}/{group}' is {style}; an ecs deployment needs BLUE_GREEN"
    found = f"{expected}" + (f", {style}" if style else "")
    if not config:
        return PASS, found
    if has_reference(config):  # the group is there; only the configuration waits for the run
        return PASS, f"{found}; deployment configuration {config} is known only at run time"
    _, wrong = look_up(
        "GetDeploymentConfig",
        f"deployment configuration '{config}'",
        lambda: codedeploy.get_deployment_config(deploymentConfigName=config)["deploymentConfigInfo"],
    )
    return (FAIL, wrong) if wrong else (PASS, f"{found}, {config}")


def _codedeploy_group_permissions(check: PlannedCheck) -> list[Permission]:
    application, group, config = check.name, check.details.get("group"), check.details.get("config")
    out = [
        Permission(
            "codedeploy",
            ("codedeploy:GetApplication",),
            regional_arn("codedeploy", f"application:{application}"),
            "PreflightReadsTheCodeDeployApplications",
        )
    ]
    if has_reference(group):
        return out
    out.append(
        Permission(
            "codedeploy",
            ("codedeploy:GetDeploymentGroup",),
            regional_arn("codedeploy", f"deploymentgroup:{application}/{group}"),
            "PreflightReadsTheCodeDeployGroups",
        )
    )
    if config and not has_reference(config):
        out.append(
            Permission(
                "codedeploy",
                ("codedeploy:GetDeploymentConfig",),
                regional_arn("codedeploy", f"deploymentconfig:{config}"),
                "PreflightReadsTheCodeDeployConfigs",
            )
        )
    return out


def _ecr_repository(access: Access, check: PlannedCheck) -> tuple[str, str]:
    ecr = access.client("ecr", check.region, check.aws_conn_id)
    _call(
        "DescribeRepositories",
        f"ecr repository '{check.name}'",
        lambda: ecr.describe_repositories(repositoryNames=[check.name]),
    )
    return PASS, ""


def _ecr_repository_permissions(check: PlannedCheck) -> list[Permission]:
    return [
        Permission(
            "ecr",
            ("ecr:DescribeRepositories",),
            regional_arn("ecr", f"repository/{check.name}"),
            "PreflightReadsTheEcrRepositories",
        )
    ]


def _s3_bucket(access: Access, check: PlannedCheck) -> tuple[str, str]:
    s3 = access.client("s3", check.region, check.aws_conn_id)
    _call("HeadBucket", f"bucket '{check.name}'", lambda: s3.head_bucket(Bucket=check.name))
    if check.details.get("versioned"):
        status = _call(
            "GetBucketVersioning", f"bucket '{check.name}'", lambda: s3.get_bucket_versioning(Bucket=check.name)
        ).get("Status")
        if status != "Enabled":
            return (
                FAIL,
                f"GetBucketVersioning: bucket '{check.name}' has versioning {status or 'never enabled'}; an S3 source needs it Enabled",
            )
        return PASS, "versioning enabled"
    return PASS, ""


def _s3_bucket_permissions(check: PlannedCheck) -> list[Permission]:
    bucket = f"arn:aws:s3:::{check.name}"
    # HeadBucket is authorised as s3:ListBucket.
    out = [Permission("s3", ("s3:ListBucket",), bucket, "PreflightHeadsTheBuckets")]
    if check.details.get("versioned"):
        out.append(Permission("s3", ("s3:GetBucketVersioning",), bucket, "PreflightReadsTheSourceBucketsVersioning"))
    return out


def _codecommit_repository(access: Access, check: PlannedCheck) -> tuple[str, str]:
    codecommit = access.client("codecommit", check.region, check.aws_conn_id)
    _call(
        "GetRepository",
        f"codecommit repository '{check.name}'",
        lambda: codecommit.get_repository(repositoryName=check.name),
    )
    return PASS, ""


def _codecommit_repository_permissions(check: PlannedCheck) -> list[Permission]:
    return [
        Permission(
            "codecommit",
            ("codecommit:GetRepository",),
            regional_arn("codecommit", str(check.name)),
            "PreflightReadsTheCodeCommitRepositories",
        )
    ]


def _sns_topic(access: Access, check: PlannedCheck) -> tuple[str, str]:
    parts = str(check.name).split(":")
    region = parts[3] if len(parts) > 5 and parts[3] else check.region  # a topic lives in its ARN's region
    sns = access.client("sns", region, check.aws_conn_id)
    _call("GetTopicAttributes", f"topic '{check.name}'", lambda: sns.get_topic_attributes(TopicArn=check.name))
    return PASS, ""


def _sns_topic_permissions(check: PlannedCheck) -> list[Permission]:
    return [Permission("sns", ("sns:GetTopicAttributes",), str(check.name), "PreflightReadsTheSnsTopics")]


def _lambda_function(access: Access, check: PlannedCheck) -> tuple[str, str]:
    lambda_ = access.client("lambda", check.region, check.aws_conn_id)
    _call("GetFunction", f"function '{check.name}'", lambda: lambda_.get_function(FunctionName=check.name))
    alias = check.details.get("alias")
    if alias and not has_reference(alias):
        _call(
            "GetAlias",
            f"alias '{alias}' of function '{check.name}'",
            lambda: lambda_.get_alias(FunctionName=check.name, Name=alias),
        )
    return PASS, ""


def _lambda_function_permissions(check: PlannedCheck) -> list[Permission]:
    alias = check.details.get("alias")
    # GetAlias is authorised on the function, as the CodeDeploy action's alias read is (action_types.py).
    calls = ("lambda:GetAlias", "lambda:GetFunction") if alias and not has_reference(alias) else ("lambda:GetFunction",)
    return [Permission("lambda", calls, function_arn(check.name), "PreflightReadsTheLambdaFunctions")]


def _stepfunctions_state_machine(access: Access, check: PlannedCheck) -> tuple[str, str]:
    parts = str(check.name).split(":")
    region = parts[3] if len(parts) > 5 and parts[3] else check.region  # a machine lives in its ARN's region
    states = access.client("stepfunctions", region, check.aws_conn_id)
    machine = _call(
        "DescribeStateMachine",
        f"state machine '{check.name}'",
        lambda: states.describe_state_machine(stateMachineArn=check.name),
    )
    kind = machine.get("type", "STANDARD")
    if kind != "STANDARD":
        return FAIL, (
            f"DescribeStateMachine: state machine '{check.name}' is {kind}; its executions cannot be described, "
            "so the action needs a STANDARD one"
        )
    return PASS, f"{kind}, {machine.get('status', 'ACTIVE')}"


def _stepfunctions_state_machine_permissions(check: PlannedCheck) -> list[Permission]:
    return [Permission("states", ("states:DescribeStateMachine",), str(check.name), "PreflightReadsTheStateMachines")]


def _elasticbeanstalk_environment(access: Access, check: PlannedCheck) -> tuple[str, str]:
    eb = access.client("elasticbeanstalk", check.region, check.aws_conn_id)
    application, environment = check.name, check.details.get("environment")
    found = _call(
        "DescribeApplications",
        f"application '{application}'",
        lambda: eb.describe_applications(ApplicationNames=[application])["Applications"],
    )
    if not found:
        names = _call(
            "DescribeApplications",
            "applications",
            lambda: [a["ApplicationName"] for a in eb.describe_applications()["Applications"]],
        )
        return FAIL, f"DescribeApplications: no application '{application}'{did_you_mean(application, names)}"
    if has_reference(environment):
        return SKIPPED_REFERENCE, f"application found; environment {environment} is known only at run time"
    environments = _call(
        "DescribeEnvironments",
        f"application '{application}'",
        lambda: eb.describe_environments(ApplicationName=application, IncludeDeleted=False)["Environments"],
    )
    match = next((e for e in environments if e.get("EnvironmentName") == environment), None)
    if match is None:
        names = [e.get("EnvironmentName") for e in environments]
        return FAIL, (
            f"DescribeEnvironments: application '{application}' has no environment '{environment}'"
            f"{did_you_mean(environment, names)}"
        )
    return PASS, f"{match.get('Status')}, health {match.get('Health')}, version {match.get('VersionLabel')}"


def _elasticbeanstalk_environment_permissions(check: PlannedCheck) -> list[Permission]:
    application, environment = check.name, check.details.get("environment")
    # Both answer only with what the caller may read: listing applications to suggest a name then lists
    # just the named one, and listing the application's environments just the named environment.
    out = [
        Permission(
            "elasticbeanstalk",
            ("elasticbeanstalk:DescribeApplications",),
            regional_arn("elasticbeanstalk", f"application/{application}"),
            "PreflightReadsTheElasticBeanstalkApplications",
        )
    ]
    if not has_reference(environment):
        out.append(
            Permission(
                "elasticbeanstalk",
                ("elasticbeanstalk:DescribeEnvironments",),
                regional_arn("elasticbeanstalk", f"environment/{application}/{environment}"),
                "PreflightReadsTheElasticBeanstalkEnvironments",
            )
        )
    return out


def _iam_role(access: Access, check: PlannedCheck) -> tuple[str, str]:
    """The role exists and trusts the service it is passed to (details["service"])."""
    iam = access.client("iam", check.region, check.aws_conn_id)
    name = str(check.name).rsplit("/", 1)[-1]
    role = _call("GetRole", f"role '{check.name}'", lambda: iam.get_role(RoleName=name)["Role"])
    service = check.details.get("service")
    trust = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(trust, str):
        trust = json.loads(unquote(trust))
    principals = []
    for statement in trust.get("Statement", []):
        if statement.get("Effect") == "Allow":
            found = (statement.get("Principal") or {}).get("Service", [])
            principals += [found] if isinstance(found, str) else list(found)
    if service and service not in principals:
        return (
            FAIL,
            f"GetRole: role '{name}' does not trust {service} (its trust policy allows {principals or 'no service'})",
        )
    return PASS, f"trusts {service}" if service else ""


def _iam_role_permissions(check: PlannedCheck) -> list[Permission]:
    name = str(check.name)
    role = name if name.startswith("arn:") else f"arn:aws:iam::{{account}}:role/{name}"
    return [Permission("iam", ("iam:GetRole",), role, "PreflightReadsTheRolesAndTheirTrustPolicies")]


def _cloudformation_stack(access: Access, check: PlannedCheck) -> tuple[str, str]:
    cloudformation = access.client("cloudformation", check.region, check.aws_conn_id)
    stack = _call(
        "DescribeStacks",
        f"stack '{check.name}'",
        lambda: cloudformation.describe_stacks(StackName=check.name)["Stacks"][0],
    )
    return PASS, stack["StackStatus"]


def _cloudformation_stack_permissions(check: PlannedCheck) -> list[Permission]:
    return [
        Permission(
            "cloudformation",
            ("cloudformation:DescribeStacks",),
            regional_arn("cloudformation", f"stack/{check.name}/*"),
            "PreflightReadsTheStacks",
        )
    ]


def _ecs_service(access: Access, check: PlannedCheck) -> tuple[str, str]:
    cluster = check.details.get("cluster")
    if has_reference(cluster):
        return SKIPPED_REFERENCE, f"cluster {cluster} is known only at run time"
    ecs = access.client("ecs", check.region, check.aws_conn_id)
    clusters = _call("DescribeClusters", f"cluster '{cluster}'", lambda: ecs.describe_clusters(clusters=[cluster]))
    found = [c for c in clusters.get("clusters", []) if c.get("status") == "ACTIVE"]
    if not found:
        return FAIL, f"DescribeClusters: no ACTIVE cluster '{cluster}'"
    resource = f"service '{check.name}' in cluster '{cluster}'"
    answer = _call("DescribeServices", resource, lambda: ecs.describe_services(cluster=cluster, services=[check.name]))
    services = [s for s in answer.get("services", []) if s.get("status") == "ACTIVE"]
    if not services:
        return FAIL, f"DescribeServices: no ACTIVE service '{check.name}' in cluster '{cluster}'"
    controller = (services[0].get("deploymentController") or {}).get("type", "ECS")
    if controller == "CODE_DEPLOY":
        return FAIL, (
            f"DescribeServices: {resource} is deployed by CodeDeploy (deployment controller CODE_DEPLOY): "
            "use deploy.codedeploy with platform ecs"
        )
    if controller != "ECS":
        return FAIL, f"DescribeServices: {resource} has deployment controller {controller}; deploy.ecs needs ECS"
    return PASS, f"ACTIVE, deployment controller ECS, task definition {services[0].get('taskDefinition')}"


def _ecs_service_permissions(check: PlannedCheck) -> list[Permission]:
    cluster = check.details.get("cluster")
    if has_reference(cluster):
        return []
    return [
        Permission(
            "ecs", ("ecs:DescribeClusters",), regional_arn("ecs", f"cluster/{cluster}"), "PreflightReadsTheEcsClusters"
        ),
        Permission(
            "ecs",
            ("ecs:DescribeServices",),
            regional_arn("ecs", f"service/{cluster}/{check.name}"),
            "PreflightReadsTheEcsServices",
        ),
    ]


@dataclass(frozen=True)
class Kind:
    label: str  # what the table calls it
    check: Checker
    permissions: CheckPermissions  # what its calls need, for `iam-policy`


CHECKERS: dict[str, Kind] = {
    "credentials": Kind("credentials", _credentials, _credentials_permissions),
    "codebuild_project": Kind("codebuild project", _codebuild_project, _codebuild_project_permissions),
    "codedeploy_group": Kind("codedeploy group", _codedeploy_group, _codedeploy_group_permissions),
    "ecr_repository": Kind("ecr repository", _ecr_repository, _ecr_repository_permissions),
    "s3_bucket": Kind("s3 bucket", _s3_bucket, _s3_bucket_permissions),
    "codecommit_repository": Kind("codecommit repository", _codecommit_repository, _codecommit_repository_permissions),
    "sns_topic": Kind("sns topic", _sns_topic, _sns_topic_permissions),
    "lambda_function": Kind("lambda function", _lambda_function, _lambda_function_permissions),
    "stepfunctions_state_machine": Kind(
        "state machine", _stepfunctions_state_machine, _stepfunctions_state_machine_permissions
    ),
    "elasticbeanstalk_environment": Kind(
        "elastic beanstalk environment", _elasticbeanstalk_environment, _elasticbeanstalk_environment_permissions
    ),
    "iam_role": Kind("iam role", _iam_role, _iam_role_permissions),
    "cloudformation_stack": Kind("cloudformation stack", _cloudformation_stack, _cloudformation_stack_permissions),
    "ecs_service": Kind("ecs service", _ecs_service, _ecs_service_permissions),
}


def check_permissions(check: PlannedCheck) -> list[Permission]:
    """What `run_checks` needs for `check`: nothing for a check it skips (a name given by reference)."""
    if check.kind != "credentials" and has_reference(check.name):
        return []
    return CHECKERS[check.kind].permissions(check)


def resource_label(check: PlannedCheck) -> str:
    what = CHECKERS[check.kind].label
    if check.kind == "credentials":
        return f"{what} of {check.aws_conn_id}"
    name = f"{check.name}/{check.details['group']}" if check.kind == "codedeploy_group" else check.name
    if check.kind == "elasticbeanstalk_environment":
        name = f"{check.name}/{check.details['environment']}"
    if check.kind == "ecs_service":
        name = f"{check.details.get('cluster')}/{check.name}"
    if check.kind == "lambda_function" and check.details.get("alias"):
        name = f"{check.name}:{check.details['alias']}"
    regionless = ("s3_bucket", "sns_topic", "stepfunctions_state_machine", "iam_role")
    where = f" ({check.region})" if check.region and check.kind not in regionless else ""
    return f"{what} {name}{where}"


def run_checks(checks: list[PlannedCheck], access: Access) -> list[Row]:
    """One row per check, in order; a check that cannot be made is a failure naming why."""
    rows: list[Row] = []
    seen_credentials: set[str] = set()
    for check in checks:
        if check.kind == "credentials":
            try:
                label = access.connection(check.aws_conn_id)[0]
            except Exception:  # noqa: BLE001 - the check itself reports it
                label = f"connection {check.aws_conn_id}"
            if label in seen_credentials:  # boto3 mode: every connection id is the same credentials
                continue
            seen_credentials.add(label)
        resource = resource_label(check)
        if check.kind != "credentials" and has_reference(check.name):
            rows.append(Row(check.stage, check.action, resource, SKIPPED_REFERENCE, "known only at run time"))
            continue
        try:
            result, reason = CHECKERS[check.kind].check(access, check)
        except Exception as err:  # noqa: BLE001 - an AWS error, a missing connection or credentials: a failed row
            result, reason = FAIL, _reason(err)
        if check.kind == "credentials":
            resource = f"credentials ({access_label(access, check)})"
        rows.append(Row(check.stage, check.action, resource, result, reason))
    return rows


def access_label(access: Access, check: PlannedCheck) -> str:
    try:
        label, role = access.connection(check.aws_conn_id)
    except Exception:  # noqa: BLE001
        return f"connection {check.aws_conn_id}"
    return f"{label}, role {role}" if role else label


def _reason(err: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):  # e.g. AssumeRole, raised by the hook's session outside aws_call
        error = err.response.get("Error", {})
        return f"{err.operation_name} failed: {error.get('Code')}: {error.get('Message')}"
    text = str(err).strip() or type(err).__name__
    return text if _error_code(err) or "failed" in text else f"{type(err).__name__}: {text}"


def failed(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.result == FAIL]


def summary(rows: list[Row]) -> dict[str, int]:
    return {
        "passed": sum(row.result == PASS for row in rows),
        "failed": len(failed(rows)),
        "skipped": sum(row.result == SKIPPED_REFERENCE for row in rows),
    }


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width table, with a count of each result at the end."""
    header = ("stage", "action", "resource", "result", "reason")
    cells = [header] + [(r.stage, r.action, r.resource, r.result, r.reason) for r in rows]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(header) - 1)]
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(line[:-1], widths)) + "  " + str(line[-1]))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    counts = summary(rows)
    lines.append(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped (reference)")
    return "\n".join(line.rstrip() for line in lines)


def as_json(rows: list[Row], pipeline: str | None = None) -> dict[str, Any]:
    return {"pipeline": pipeline, "ok": not failed(rows), **summary(rows), "checks": [asdict(r) for r in rows]}


def as_json_text(reports: list[dict[str, Any]]) -> str:
    return json.dumps(reports, indent=2)
