"""CodeDeploy action ``deploy.codedeploy``: EC2/on-premises, ECS (blue/green) and Lambda deployments.

The deployment is created, then waited for deferred (the triggerer's shared batched poller).
See docs/operators.md for the reattach and stop rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import yaml
from airflow.providers.amazon.aws.hooks.ecs import EcsHook
from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.artifacts import PassesArtifacts
from release_orchestrator.hooks.base import aws_call
from release_orchestrator.hooks.codedeploy import (
    DEPLOYMENT_READY,
    DEPLOYMENT_TERMINAL_STATES,
    CodeDeployHook,
)
from release_orchestrator.hooks.ecs import TASK_DEFINITION_READ_ONLY
from release_orchestrator.links import CodeDeployDeploymentLink
from release_orchestrator.operators.reattach import (
    StartRecord,
    StopsItsWork,
    connection_kwargs,
    defer_timeout,
    stable_token,
    trigger_kwargs,
)
from release_orchestrator.pipeline.files import artifact_file, is_file_path, read_json_file
from release_orchestrator.results.codedeploy import DeploymentResult, continue_if_ready
from release_orchestrator.triggers.codedeploy import CodeDeployDeploymentTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

PLATFORMS = ("server", "ecs", "lambda")
ON_READY = ("continue", "wait")
SYNC_WAIT_MAX_ATTEMPTS = 1_000_000

BUNDLE_TYPES = {
    ".zip": "zip",
    ".tar": "tar",
    ".tgz": "tgz",
    ".gz": "tgz",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".json": "JSON",
}


# What CodePipeline's ECS blue/green action replaces in a task definition template with the image (Image1).
IMAGE_PLACEHOLDER = "<IMAGE1_NAME>"
# ... and in an AppSpec template with the task definition it registered.
TASK_DEFINITION_PLACEHOLDER = "<TASK_DEFINITION>"


def as_bool(value: Any) -> bool | None:
    """Booleans that may arrive as rendered template strings."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def as_json(value: Any) -> Any:
    """Mappings and lists that may arrive as JSON strings."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        return json.loads(value)
    return value


def appspec_hooks(hooks: Any) -> list[dict[str, str]]:
    """AppSpec Hooks from a mapping lifecycle event -> function, or a list of such one-key mappings."""
    hooks = as_json(hooks)
    if not hooks:
        return []
    if isinstance(hooks, Mapping):
        return [{event: function} for event, function in hooks.items()]
    return [dict(hook) for hook in hooks]


def appspec_network_configuration(config: Any) -> dict[str, Any]:
    """AppSpec's NetworkConfiguration from the AppSpec or the ECS API spelling."""
    config = as_json(config)
    inner = config.get("AwsvpcConfiguration") or config.get("awsvpcConfiguration") or config
    spelled = {"subnets": "Subnets", "securitygroups": "SecurityGroups", "assignpublicip": "AssignPublicIp"}
    return {"AwsvpcConfiguration": {spelled.get(k.lower(), k): v for k, v in inner.items()}}


def appspec_revision(appspec: dict[str, Any]) -> dict[str, Any]:
    content = json.dumps(appspec, indent=2)
    return {
        "revisionType": "AppSpecContent",
        "appSpecContent": {"content": content, "sha256": hashlib.sha256(content.encode()).hexdigest()},
    }


class CodeDeployOperator(PassesArtifacts, StopsItsWork, AwsBaseOperator[CodeDeployHook]):
    """Deploy with CodeDeploy (action type ``deploy.codedeploy``).

    :param application_name: the CodeDeploy application.
    :param deployment_group_name: its deployment group.
    :param platform: ``server`` (EC2/on-premises), ``ecs`` or ``lambda``.
    :param deployment_config_name: deployment configuration (default: the group's).
    :param auto_rollback: roll back on failure and on stop (true) or never (false); unset keeps the group's.
    :param on_ready: ``continue`` the deployment when it waits at Ready, or ``wait`` until someone does.
    :param description: the deployment's description.
    :param revision_s3_bucket: server: bucket of the revision bundle.
    :param revision_s3_key: server: its key (or an ``s3://`` URI).
    :param revision_bundle_type: server: zip, tar, tgz, YAML or JSON (default: from the key).
    :param revision_github_repository: server: ``owner/repo`` of a GitHub revision.
    :param revision_github_commit: server: its commit id.
    :param task_definition_template: ecs: task definition, as a mapping or a path to a JSON file.
    :param spec_folder: the folder of the spec the action comes from: a template file is read only
        when it is inside (links followed). None (an operator in a DAG file) reads any path.
    :param appspec_template: ecs: CodePipeline's AppSpec template in an input artifact ('BuildOutput::appspec.yaml'):
        its <TASK_DEFINITION> becomes the registered task definition; the container, port and hooks come from it.
    :param container_name: ecs: the container receiving traffic (and the new image).
    :param container_port: ecs: its port.
    :param image: ecs: image to put into the container (default: the template's).
    :param platform_version: ecs: Fargate platform version.
    :param network_configuration: ecs: awsvpc network configuration.
    :param hooks: lifecycle event -> Lambda function name.
    :param function_name: lambda: the function.
    :param alias: lambda: the alias to shift.
    :param target_version: lambda: the version to shift to.
    :param publish_version: lambda: publish a new version and shift to it.
    :param current_version: lambda: the version shifted from (default: the alias's).
    :param poll_interval: seconds between two looks at the deployment.
    :param deferrable: wait in the triggerer (default) instead of a worker slot.
    """

    aws_hook_class = CodeDeployHook
    template_fields: Sequence[str] = aws_template_fields(
        "application_name",
        "deployment_group_name",
        "platform",
        "deployment_config_name",
        "auto_rollback",
        "on_ready",
        "description",
        "revision_s3_bucket",
        "revision_s3_key",
        "revision_bundle_type",
        "revision_github_repository",
        "revision_github_commit",
        "task_definition_template",
        "appspec_template",
        "container_name",
        "container_port",
        "image",
        "platform_version",
        "network_configuration",
        "hooks",
        "function_name",
        "alias",
        "target_version",
        "publish_version",
        "current_version",
    )
    template_fields_renderers = {"task_definition_template": "json", "network_configuration": "json"}
    ui_color = "#f0e0d5"
    operator_extra_links = (CodeDeployDeploymentLink(),)

    record_key = "codedeploy_deployment"

    def __init__(
        self,
        *,
        application_name: str,
        deployment_group_name: str,
        platform: str = "server",
        deployment_config_name: str | None = None,
        auto_rollback: bool | str | None = None,
        on_ready: str = "continue",
        description: str | None = None,
        revision_s3_bucket: str | None = None,
        revision_s3_key: str | None = None,
        revision_bundle_type: str | None = None,
        revision_github_repository: str | None = None,
        revision_github_commit: str | None = None,
        task_definition_template: dict[str, Any] | str | None = None,
        appspec_template: str | None = None,
        container_name: str | None = None,
        container_port: int | str | None = None,
        image: str | None = None,
        platform_version: str | None = None,
        network_configuration: dict[str, Any] | str | None = None,
        hooks: dict[str, str] | list[dict[str, str]] | str | None = None,
        function_name: str | None = None,
        alias: str | None = None,
        target_version: str | None = None,
        publish_version: bool | str = False,
        current_version: str | None = None,
        spec_folder: str | None = None,
        poll_interval: float = 15,
        deferrable: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.application_name = application_name
        self.deployment_group_name = deployment_group_name
        self.platform = platform
        self.deployment_config_name = deployment_config_name
        self.auto_rollback = auto_rollback
        self.on_ready = on_ready
        self.description = description
        self.revision_s3_bucket = revision_s3_bucket
        self.revision_s3_key = revision_s3_key
        self.revision_bundle_type = revision_bundle_type
        self.revision_github_repository = revision_github_repository
        self.revision_github_commit = revision_github_commit
        self.task_definition_template = task_definition_template
        self.appspec_template = appspec_template
        self.container_name = container_name
        self.container_port = container_port
        self.image = image
        self.platform_version = platform_version
        self.network_configuration = network_configuration
        self.hooks = hooks
        self.function_name = function_name
        self.alias = alias
        self.target_version = target_version
        self.publish_version = publish_version
        self.current_version = current_version
        self.spec_folder = spec_folder
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._deployment_id: str | None = None

    @property
    def _platform(self) -> str:
        platform = str(self.platform or "server").lower()
        if platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {PLATFORMS}, not {self.platform!r}")
        return platform

    @property
    def _continue_at_ready(self) -> bool:
        on_ready = str(self.on_ready or "continue").lower()
        if on_ready not in ON_READY:
            raise ValueError(f"on_ready must be one of {ON_READY}, not {self.on_ready!r}")
        return on_ready == "continue"

    @property
    def _group(self) -> str:
        return f"{self.application_name}/{self.deployment_group_name}"

    def _aws_kwargs(self) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    # --- execution ---

    def result(self) -> DeploymentResult:
        """How a finished deployment becomes this action's outputs or failure (also run by the trigger)."""
        return DeploymentResult(
            application_name=self.application_name,
            deployment_group_name=self.deployment_group_name,
            platform=self._platform,
            **connection_kwargs(self),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        # Checked before anything is created: a bad value must not leave a deployment nobody waits for.
        continue_at_ready = self._continue_at_ready
        record = StartRecord(context, self.record_key, self.log)
        marker = self.marker(context)
        deployment = self._reattach(record, marker) or self._create(context, record, marker)
        self._deployment_id = deployment["deploymentId"]
        self._persist_link(context, deployment["deploymentId"])
        self.record_locations(context)
        if deployment["status"] == DEPLOYMENT_READY and continue_at_ready:
            deployment = self._continue(deployment)
            continue_at_ready = False  # continued here: the trigger only waits for the end
        if deployment["status"] in DEPLOYMENT_TERMINAL_STATES:
            return self.finish(context, deployment)
        return self._wait(context, deployment["deploymentId"], continue_at_ready)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumption by a trigger of an earlier version, which did not end the task itself."""
        if not event:
            raise AirflowException("Trigger error: event is None")
        deployment_id = self._deployment_id = event.get("deployment_id")
        if event.get("status") == "error":
            raise AirflowException(event.get("message", f"Waiting for deployment {deployment_id} failed"))
        deployment = self.hook.get_deployment(deployment_id)
        if event.get("status") == "ready":
            # The event was seen at Ready a while ago: someone may have continued or stopped it since.
            deployment = self._continue(deployment)
            if deployment["status"] not in DEPLOYMENT_TERMINAL_STATES:
                return self._wait(context, deployment_id, continue_at_ready=False)
        return self.finish(context, deployment)

    def _wait(self, context: Context, deployment_id: str, continue_at_ready: bool) -> dict[str, Any]:
        if self.deferrable:
            # The trigger continues the deployment at Ready (if asked to) and ends the task itself.
            self.defer(
                trigger=CodeDeployDeploymentTrigger(
                    deployment_id=deployment_id,
                    continue_at_ready=continue_at_ready,
                    **trigger_kwargs(self, context, self.result()),
                ),
                method_name="execute_complete",
                timeout=defer_timeout(self, context),
            )
        return self._wait_here(context, deployment_id, continue_at_ready)

    def _wait_here(self, context: Context, deployment_id: str, continue_at_ready: bool) -> dict[str, Any]:
        """Wait in this worker (``deferrable=False``)."""
        waiter = "deployment_ready_or_finished" if continue_at_ready else "deployment_finished"
        self.log.info("Waiting for deployment %s", deployment_id)
        self.hook.get_waiter(waiter).wait(
            deploymentId=deployment_id,
            WaiterConfig={"Delay": int(float(self.poll_interval)), "MaxAttempts": SYNC_WAIT_MAX_ATTEMPTS},
        )
        deployment = self.hook.get_deployment(deployment_id)
        if deployment["status"] == DEPLOYMENT_READY:
            deployment = self._continue(deployment)
            if deployment["status"] not in DEPLOYMENT_TERMINAL_STATES:
                return self._wait_here(context, deployment_id, continue_at_ready=False)
        return self.finish(context, deployment)

    def _continue(self, deployment: dict[str, Any]) -> dict[str, Any]:
        return continue_if_ready(self.hook, deployment, self.log)

    def marker(self, context: Context) -> str:
        """Goes into the description, so a try that lost its record still finds its deployment."""
        return f"[airflow-task {stable_token(context, 'codedeploy')[:24]}]"

    def _reattach(self, record: StartRecord, marker: str) -> dict[str, Any] | None:
        deployment_id = record.pending_id
        if deployment_id:
            try:
                deployment = self.hook.get_deployment(deployment_id)
            except Exception as err:
                self.log.warning("Recorded deployment %s cannot be read (%s)", deployment_id, err)
            else:
                if deployment["status"] not in DEPLOYMENT_TERMINAL_STATES:
                    self.log.info(
                        "Reattaching to deployment %s (%s), created by an earlier try of this task",
                        deployment_id,
                        deployment["status"],
                    )
                    return deployment
                # Finished deployments were reported, by the trigger that ended the earlier try, or
                # were abandoned (stopped): a new try is a new deployment.
                self.log.info(
                    "Recorded deployment %s has finished (%s): creating a new one", deployment_id, deployment["status"]
                )
        try:
            deployment_id = self.hook.find_active_deployment(self.application_name, self.deployment_group_name, marker)
        except Exception as err:
            self.log.warning("Could not look for an active deployment of this task: %s", err)
            return None
        if not deployment_id:
            return None
        self.log.info("Reattaching to active deployment %s of this task, found by its description", deployment_id)
        record.started(deployment_id, record.next_generation)
        return self.hook.get_deployment(deployment_id)

    def _create(self, context: Context, record: StartRecord, marker: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "revision": self.revision(context),
            "description": " ".join(filter(None, (self.description, marker))),
        }
        if self.deployment_config_name:
            kwargs["deploymentConfigName"] = self.deployment_config_name
        rollback = as_bool(self.auto_rollback)
        if rollback is not None:
            kwargs["autoRollbackConfiguration"] = (
                {"enabled": True, "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]}
                if rollback
                else {"enabled": False}
            )
        self.log.info("Creating a %s deployment of %s", self._platform, self._group)
        deployment_id = self.hook.create_deployment(self.application_name, self.deployment_group_name, **kwargs)
        record.started(deployment_id, record.next_generation)
        self.log.info("Created deployment %s", deployment_id)
        return self.hook.get_deployment(deployment_id)

    def _persist_link(self, context: Context, deployment_id: str) -> None:
        CodeDeployDeploymentLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            deployment_id=deployment_id,
        )

    # --- revisions ---

    def revision(self, context: Context | None = None) -> dict[str, Any]:
        if self._platform == "ecs":
            return appspec_revision(self.ecs_appspec(self.register_task_definition(context), context))
        if self._platform == "lambda":
            return appspec_revision(self.lambda_appspec(context))
        return self.server_revision(context)

    def server_revision(self, context: Context | None = None) -> dict[str, Any]:
        if self.input_names and context is not None:  # the bundle is the input artifact (a zip)
            bundle = self.input_artifact(context)
            location = {"bucket": bundle.bucket, "key": bundle.key, "bundleType": "zip"}
            if bundle.version_id:
                location["version"] = bundle.version_id
            return {"revisionType": "S3", "s3Location": location}
        bucket, key = self.revision_s3_bucket, self.revision_s3_key
        if key and str(key).startswith("s3://") and not bucket:
            bucket, _, key = key[len("s3://") :].partition("/")
        if bucket and key:
            bundle_type = self.revision_bundle_type or next(
                (kind for ext, kind in BUNDLE_TYPES.items() if key.lower().endswith(ext)), "zip"
            )
            return {"revisionType": "S3", "s3Location": {"bucket": bucket, "key": key, "bundleType": bundle_type}}
        if self.revision_github_repository and self.revision_github_commit:
            return {
                "revisionType": "GitHub",
                "gitHubLocation": {
                    "repository": self.revision_github_repository,
                    "commitId": self.revision_github_commit,
                },
            }
        raise ValueError(
            "A server deployment needs revision_s3_bucket and revision_s3_key, "
            "or revision_github_repository and revision_github_commit"
        )

    def task_definition(self, context: Context | None = None) -> dict[str, Any]:
        """The template as register_task_definition's arguments, with ``image`` put in.

        Either may come from an input artifact ('BuildOutput::taskdef.json'; an image as CodePipeline's
        imageDetail.json, whose ImageURI is taken); the image replaces CodePipeline's <IMAGE1_NAME>
        placeholder, or else the image of container_name."""
        template = self.task_definition_template
        if not template:
            raise ValueError("An ecs deployment needs task_definition_template")
        if in_artifact := artifact_file(template):
            template = self._artifact_json(context, *in_artifact, "task_definition_template")
        elif is_file_path(template):
            template = read_json_file(template, self.spec_folder, "task_definition_template")
        template = as_json(template)
        template = dict(template.get("taskDefinition", template))
        for field in TASK_DEFINITION_READ_ONLY:
            template.pop(field, None)
        image = self.image
        if in_artifact := artifact_file(image):
            image = self._artifact_json(context, *in_artifact, "image").get("ImageURI")
            if not image:
                raise ValueError(f"image: {self.image} has no ImageURI")
        if image:
            containers = template.get("containerDefinitions") or []
            targets = [c for c in containers if c.get("image") == IMAGE_PLACEHOLDER] or [
                c
                for c in containers
                if c.get("name") == self.container_name or len(containers) == 1 and not self.container_name
            ][:1]
            if not targets:
                raise ValueError(f"Task definition has no container named {self.container_name!r}")
            for container in targets:
                container["image"] = image
        return template

    def _artifact_json(self, context: Context | None, name: str, path: str, key: str) -> Any:
        if context is None:
            raise ValueError(f"{key}: {name}::{path} is read from an input artifact when the action runs")
        try:
            return json.loads(self.read_input_file(context, name, path))
        except ValueError as error:
            raise ValueError(f"{key}: cannot read {name}::{path} as JSON: {error}") from None

    def register_task_definition(self, context: Context | None = None) -> str:
        task_definition = self.task_definition(context)
        family = task_definition.get("family")
        ecs = EcsHook(**self._aws_kwargs())
        with aws_call("RegisterTaskDefinition", f"family '{family}'"):
            registered = ecs.conn.register_task_definition(**task_definition)["taskDefinition"]
        self.log.info("Registered task definition %s", registered["taskDefinitionArn"])
        return registered["taskDefinitionArn"]

    def ecs_appspec(self, task_definition_arn: str, context: Context | None = None) -> dict[str, Any]:
        if self.appspec_template:
            return self._appspec_from_template(task_definition_arn, context)
        properties: dict[str, Any] = {"TaskDefinition": task_definition_arn}
        if self.container_name and self.container_port not in (None, ""):
            properties["LoadBalancerInfo"] = {
                "ContainerName": self.container_name,
                "ContainerPort": int(self.container_port),
            }
        if self.platform_version:
            properties["PlatformVersion"] = self.platform_version
        if self.network_configuration:
            properties["NetworkConfiguration"] = appspec_network_configuration(self.network_configuration)
        appspec: dict[str, Any] = {
            "version": 0.0,
            "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": properties}}],
        }
        if hooks := appspec_hooks(self.hooks):
            appspec["Hooks"] = hooks
        return appspec

    def _appspec_from_template(self, task_definition_arn: str, context: Context | None) -> dict[str, Any]:
        """CodePipeline's ECS blue/green AppSpec: the template's <TASK_DEFINITION> becomes the new definition."""
        named = artifact_file(self.appspec_template)
        if named is None or context is None:
            raise ValueError(f"appspec_template: {self.appspec_template!r} is not a file in an input artifact")
        try:
            appspec = yaml.safe_load(self.read_input_file(context, *named))
            services = [r["TargetService"] for r in appspec["Resources"] if "TargetService" in r]
            properties = services[0]["Properties"]
        except (yaml.YAMLError, KeyError, IndexError, TypeError) as error:
            raise ValueError(f"appspec_template: {self.appspec_template} is no ECS AppSpec: {error!r}") from None
        if properties.get("TaskDefinition") not in (TASK_DEFINITION_PLACEHOLDER, None):
            self.log.warning(
                "appspec_template names TaskDefinition %s: replaced by the new one", properties["TaskDefinition"]
            )
        properties["TaskDefinition"] = task_definition_arn
        if self.platform_version:
            properties["PlatformVersion"] = self.platform_version
        if self.network_configuration:
            properties["NetworkConfiguration"] = appspec_network_configuration(self.network_configuration)
        return appspec

    def lambda_appspec(self, context: Context | None = None) -> dict[str, Any]:
        if not self.function_name or not self.alias:
            raise ValueError("A lambda deployment needs function_name and alias")
        lambda_hook = LambdaHook(**self._aws_kwargs())
        function = f"function '{self.function_name}'"
        if self.input_names and context is not None and as_bool(self.publish_version):
            # The input artifact is the function's new code, published as the version to shift to.
            code = self.input_artifact(context)
            request = {"FunctionName": self.function_name, "S3Bucket": code.bucket, "S3Key": code.key, "Publish": True}
            if code.version_id:
                request["S3ObjectVersion"] = code.version_id
            with aws_call("UpdateFunctionCode", f"{function} from {code.uri}"):
                target = lambda_hook.conn.update_function_code(**request)["Version"]
            self.log.info("Published version %s of %s from %s", target, self.function_name, code.uri)
        elif as_bool(self.publish_version):
            with aws_call("PublishVersion", function):
                target = lambda_hook.conn.publish_version(FunctionName=self.function_name)["Version"]
            self.log.info("Published version %s of %s", target, self.function_name)
        elif self.target_version not in (None, ""):
            target = str(self.target_version)
        else:
            raise ValueError("A lambda deployment needs target_version or publish_version")
        current = self.current_version
        if current in (None, ""):
            with aws_call("GetAlias", f"alias '{self.alias}' of {function}"):
                current = lambda_hook.conn.get_alias(FunctionName=self.function_name, Name=self.alias)[
                    "FunctionVersion"
                ]
        self.log.info("Shifting %s:%s from version %s to %s", self.function_name, self.alias, current, target)
        logical_id = re.sub(r"[^A-Za-z0-9]", "", self.function_name.rsplit(":", 1)[-1]) or "Function"
        appspec: dict[str, Any] = {
            "version": 0.0,
            "Resources": [
                {
                    logical_id: {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {
                            "Name": self.function_name,
                            "Alias": self.alias,
                            "CurrentVersion": str(current),
                            "TargetVersion": str(target),
                        },
                    }
                }
            ],
        }
        if hooks := appspec_hooks(self.hooks):
            appspec["Hooks"] = hooks
        return appspec

    # --- result ---

    def finish(self, context: Context, deployment: dict[str, Any]) -> dict[str, Any]:
        """Report a finished deployment here in the worker: outputs on success, an exception otherwise."""
        StartRecord(context, self.record_key, self.log).reported()
        return self.result().conclude(deployment, self.log)

    # --- stopping ---

    def running_work_id(self) -> str | None:
        return self._deployment_id

    def stop_work(self, deployment_id: str) -> None:
        """Stop (and roll back) the deployment."""
        self.log.info("Stopping deployment %s (with rollback)", deployment_id)
        try:
            self.hook.stop_deployment(deployment_id, auto_rollback=True)
        except Exception as err:
            self.log.warning("Could not stop deployment %s: %s", deployment_id, err)
