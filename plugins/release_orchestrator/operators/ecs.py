"""ECS action ``deploy.ecs``: a rolling deployment of a service whose deployment controller is ECS.

New images go into a new revision of the service's current task definition, the service is updated to
it, and the deployment is waited for deferred (the triggerer's shared batched poller) until its
rolloutState is COMPLETED or FAILED. See docs/operators.md for the reattach and stop rules.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.artifacts import PassesArtifacts
from release_orchestrator.hooks.ecs import (
    ROLLOUT_IN_PROGRESS,
    ROLLOUT_TERMINAL_STATES,
    EcsDeployHook,
    deployment_item_id,
)
from release_orchestrator.links import EcsServiceDeploymentsLink
from release_orchestrator.operators.codedeploy import as_json
from release_orchestrator.operators.reattach import (
    StartRecord,
    StopsItsWork,
    connection_kwargs,
    defer_timeout,
    trigger_kwargs,
)
from release_orchestrator.pipeline.files import artifact_file, is_file_path, read_json_file
from release_orchestrator.results.ecs import EcsDeploymentResult
from release_orchestrator.triggers.ecs import EcsDeploymentTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES = 60  # CodePipeline's DeploymentTimeout default


def parse_image_definitions(value: Any) -> dict[str, str]:
    """imagedefinitions.json's content (``[{"name", "imageUri"}, ...]``) as container name -> image URI."""
    value = as_json(value)
    if not isinstance(value, list) or not value:
        raise ValueError(f"image_definitions: expected a non-empty list of {{name, imageUri}}, got {value!r}")
    images: dict[str, str] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item[k] for k in ("name", "imageUri")
        ):
            raise ValueError(f"image_definitions[{i}]: expected {{name, imageUri}} (two strings), got {item!r}")
        images[item["name"]] = item["imageUri"]
    return images


def with_images(task_definition: dict[str, Any], images: dict[str, str]) -> dict[str, Any]:
    """A copy of the task definition with the containers' images replaced; an unknown container is an error."""
    out = copy.deepcopy(task_definition)
    containers = {c.get("name"): c for c in out.get("containerDefinitions") or []}
    unknown = [name for name in images if name not in containers]
    if unknown:
        name = f"{task_definition.get('family')}:{task_definition.get('revision')}"
        raise ValueError(
            f"image_definitions names container {', '.join(repr(n) for n in unknown)}, which task definition "
            f"{name} does not have; its containers: {', '.join(map(repr, containers)) or 'none'}"
        )
    for container_name, image in images.items():
        containers[container_name]["image"] = image
    return out


class EcsDeployOperator(PassesArtifacts, StopsItsWork, AwsBaseOperator[EcsDeployHook]):
    """Deploy new images to an ECS service with a rolling deployment (action type ``deploy.ecs``).

    :param cluster_name: the service's cluster.
    :param service_name: the service (deployment controller ECS).
    :param image_definitions: ``[{"name": container, "imageUri": uri}, ...]``, or the path of an
        imagedefinitions.json file.
    :param deployment_timeout: minutes the deployment may take; past that the action fails and the
        service is rolled back to the task definition it ran before.
    :param spec_folder: the folder of the spec the action comes from: a file is read only when it is inside
        (links followed). None (an operator in a DAG file) reads any path.
    :param poll_interval: seconds between two looks at the deployment.
    """

    aws_hook_class = EcsDeployHook
    template_fields: Sequence[str] = aws_template_fields(
        "cluster_name", "service_name", "image_definitions", "deployment_timeout"
    )
    template_fields_renderers = {"image_definitions": "json"}
    ui_color = "#f0d5e0"
    operator_extra_links = (EcsServiceDeploymentsLink(),)

    record_key = "ecs_deployment"

    def __init__(
        self,
        *,
        cluster_name: str,
        service_name: str,
        image_definitions: list[dict[str, str]] | str,
        deployment_timeout: int | str = DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES,
        spec_folder: str | None = None,
        poll_interval: float = 15,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_name = cluster_name
        self.service_name = service_name
        self.image_definitions = image_definitions
        self.deployment_timeout = deployment_timeout
        self.spec_folder = spec_folder
        self.poll_interval = poll_interval
        self._item_id: str | None = None
        self._previous: str | None = None
        self._unused_revision: str | None = None  # registered by an earlier try that crashed before UpdateService

    @property
    def _service(self) -> str:
        return f"service '{self.service_name}' in cluster '{self.cluster_name}'"

    def images(self) -> dict[str, str]:
        value = self.image_definitions
        if artifact_file(value):
            try:
                value = json.loads(self.file_text(value, "image_definitions", self.spec_folder))
            except ValueError as err:
                raise ValueError(f"image_definitions: cannot read {value} as JSON: {err}") from None
        elif is_file_path(value):
            value = read_json_file(value, self.spec_folder, "image_definitions")
        return parse_image_definitions(value)

    def result(self) -> EcsDeploymentResult:
        """How a finished deployment becomes this action's outputs or failure (also run by the trigger)."""
        return EcsDeploymentResult(
            cluster_name=self.cluster_name,
            service_name=self.service_name,
            previous_task_definition=self._previous,
            **connection_kwargs(self),
        )

    # --- execution ---

    def execute(self, context: Context) -> dict[str, Any]:
        self.load_artifact_files(context, ("image_definitions",))
        images = self.images()  # a bad value fails here, before anything changes
        record = StartRecord(context, self.record_key, self.log)
        item = self._reattach(record) or self._start(record, images)
        self._item_id = item["id"]
        self._persist_link(context)
        if item["rolloutState"] in ROLLOUT_TERMINAL_STATES:
            return self.finish(context, item)
        self.defer(
            trigger=EcsDeploymentTrigger(
                deployment=item["id"],
                deadline=record.entry.get("deadline"),
                **trigger_kwargs(self, context, self.result()),
            ),
            method_name="execute_complete",
            timeout=defer_timeout(self, context),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumption by a trigger of an earlier version, which did not end the task itself."""
        if not event:
            raise AirflowException("Trigger error: event is None")
        self._item_id = event.get("deployment")
        if event.get("status") == "error":
            raise AirflowException(event.get("message", f"Waiting for deployment {self._item_id} failed"))
        self._previous = StartRecord(context, self.record_key, self.log).entry.get("previous")
        return self.finish(context, self._read(self._item_id))

    def _read(self, item_id: str) -> dict[str, Any]:
        items = self.hook.deployments([item_id])
        if not items:
            raise AirflowException(f"DescribeServices on {self._service} failed: the service is gone")
        return items[0]

    def _reattach(self, record: StartRecord) -> dict[str, Any] | None:
        entry = record.entry
        if not entry or entry.get("reported"):
            return None
        self._previous = entry.get("previous")
        item_id = entry.get("id")
        if not item_id and entry.get("taskDefinition"):
            # A try crashed between UpdateService and recording the deployment: find it by its task definition.
            item_id = self._find_deployment(entry["taskDefinition"])
            if item_id:
                record.started(item_id, entry["generation"], **_extra(entry))
            else:  # it crashed before UpdateService: deploy the revision it registered
                self._unused_revision = entry["taskDefinition"]
        if not item_id:
            return None
        try:
            item = self._read(item_id)
        except Exception as err:
            self.log.warning("Recorded deployment %s cannot be read (%s): deploying anew", item_id, err)
            return None
        if item["rolloutState"] != ROLLOUT_IN_PROGRESS:
            # Finished deployments were reported by the trigger that ended the earlier try, or abandoned.
            self.log.info("Recorded deployment %s has finished (%s): deploying anew", item_id, item["rolloutState"])
            return None
        self.log.info("Reattaching to deployment %s of %s, started by an earlier try", item_id, self._service)
        return item

    def _find_deployment(self, task_definition: str) -> str | None:
        try:
            service = self.hook.describe_service(self.cluster_name, self.service_name)
        except Exception as err:
            self.log.warning("Could not look for this task's deployment: %s", err)
            return None
        for deployment in service.get("deployments") or []:
            if deployment.get("taskDefinition") == task_definition:
                self.log.info("Found deployment %s of task definition %s", deployment["id"], task_definition)
                return deployment_item_id(self.cluster_name, self.service_name, deployment["id"])
        return None

    def _start(self, record: StartRecord, images: dict[str, str]) -> dict[str, Any]:
        service = self.hook.describe_service(self.cluster_name, self.service_name)
        if service.get("status") != "ACTIVE":
            raise AirflowException(f"{self._service} is {service.get('status')}, not ACTIVE")
        controller = (service.get("deploymentController") or {}).get("type", "ECS")
        if controller != "ECS":
            hint = " use deploy.codedeploy with platform ecs" if controller == "CODE_DEPLOY" else ""
            raise AirflowException(
                f"{self._service} has deployment controller {controller}; deploy.ecs deploys services whose "
                f"deployment controller is ECS (rolling updates):{hint or ' not this one'}"
            )
        previous = self._previous = service["taskDefinition"]
        generation = record.next_generation
        if self._unused_revision and self._unused_revision != previous:
            new_arn = self._unused_revision
            self.log.info("Deploying task definition %s, registered by an earlier try of this task", new_arn)
        else:
            task_definition = with_images(self.hook.describe_task_definition(previous), images)
            new_arn = self.hook.register_task_definition(task_definition)
            self.log.info("Registered task definition %s (from %s) with images %s", new_arn, previous, images)
        minutes = int(self.deployment_timeout or DEFAULT_DEPLOYMENT_TIMEOUT_MINUTES)
        extra = {"taskDefinition": new_arn, "previous": previous, "deadline": time.time() + minutes * 60}
        # Recorded before UpdateService: a try that crashes right after it finds the deployment by this revision.
        record.started("", generation, **extra)
        updated = self.hook.update_service(self.cluster_name, self.service_name, new_arn)
        deployment = next(
            (d for d in updated.get("deployments") or [] if d.get("taskDefinition") == new_arn),
            None,
        )
        if deployment is None:
            raise AirflowException(f"UpdateService on {self._service} started no deployment of {new_arn}")
        item_id = deployment_item_id(self.cluster_name, self.service_name, deployment["id"])
        record.started(item_id, generation, **extra)
        self.log.info(
            "Updated %s to %s: deployment %s (it ran %s before; a stop rolls it back to that)",
            self._service,
            new_arn,
            deployment["id"],
            previous,
        )
        return self._read(item_id)

    def _persist_link(self, context: Context) -> None:
        EcsServiceDeploymentsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            cluster_name=self.cluster_name,
            service_name=self.service_name,
        )

    # --- result ---

    def finish(self, context: Context, item: dict[str, Any]) -> dict[str, Any]:
        """Report a finished deployment here in the worker: outputs on success, an exception otherwise."""
        StartRecord(context, self.record_key, self.log).reported()
        return self.result().conclude(item, self.log)

    # --- stopping ---

    def running_work_id(self) -> str | None:
        return self._item_id

    def stop_work(self, work_id: str) -> None:
        """Roll the service back to the task definition it ran before this action."""
        self.log.info("Stopping deployment %s", work_id)
        try:
            self.log.info("Deployment %s: %s", work_id, self.result().roll_back(self.log))
        except Exception as err:
            self.log.warning("Could not roll %s back: %s", self._service, err)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context):
        # A timed-out wait stops the work from a fresh operator: it needs the recorded task definition.
        self._previous = StartRecord(context, self.record_key, self.log).entry.get("previous")
        return super().resume_execution(next_method, next_kwargs, context)


def _extra(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("id", "generation", "reported")}
