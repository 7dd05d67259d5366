"""ECS rolling deployments that take time (services whose deployment controller is ECS).

moto keeps clusters, services and task definitions, but its UpdateService starts no deployment, its
deployments never leave IN_PROGRESS and it drops a service's deploymentConfiguration. This module keeps
the deployments of ECS-controlled services: CreateService, and UpdateService with another task definition
(or forceNewDeployment), start one that goes IN_PROGRESS -> COMPLETED over `deploy_seconds`; older
deployments are removed once the new one completes. moto answers the calls; the answers' `deployments`,
`deploymentConfiguration` and `events` are ours.

Faults (`"ecs": {"<cluster>/<service>" or "<cluster>": {"mode": ...}}`) concern deployments of a task
definition other than the last completed one (a bad revision; going back to the known-good one works):
- fail: its tasks fail to start. With the deployment circuit breaker on, the deployment turns FAILED
  ("ECS deployment circuit breaker: tasks failed to start.") and, with its rollback on, a new deployment
  takes the service back to the last completed task definition. With the breaker off it stays
  IN_PROGRESS with failed tasks, as ECS keeps trying.
- hang: stays IN_PROGRESS until another deployment replaces it.
"""

from __future__ import annotations

import copy
import logging
import random

from include.sandbox.common import ApiError, backend, now, ts
from include.sandbox.faults import Faults

log = logging.getLogger(__name__)

OPERATIONS = {"CreateService", "UpdateService", "DescribeServices"}
TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"

# ECS's defaults for a service created without a deploymentConfiguration.
DEFAULT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}
CIRCUIT_BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."


class Rollout:
    """One ECS-controlled service: its deployments (ECS's shape), configuration and events."""

    def __init__(self, region: str, cluster: str, name: str, configuration: dict):
        self.region, self.cluster, self.name = region, cluster, name
        self.configuration = configuration
        self.deployments: list[dict] = []
        self.events: list[dict] = []
        self.last_completed: str | None = None  # task definition of the last COMPLETED deployment
        self.modes: dict[str, str | None] = {}  # deployment id -> fault mode
        self.started: dict[str, float] = {}  # deployment id -> start time

    @property
    def primary(self) -> dict | None:
        return next((d for d in self.deployments if d["status"] == "PRIMARY"), None)


class EcsRolloutEmulator:
    def __init__(self, faults: Faults, deploy_seconds: float):
        self.faults = faults
        self.deploy_seconds = deploy_seconds
        self.reset()

    def reset(self) -> None:
        self.services: dict[tuple[str, str, str], Rollout] = {}

    # ---- API: before moto answers, and what its answer becomes -----------------------------

    def before(self, operation: str, params: dict, region: str) -> None:
        """UpdateService: remember the service's state as it was (its first deployment, if not yet tracked)."""
        if operation == "UpdateService":
            self._rollout(region, params.get("cluster", "default"), params.get("service", ""))

    def after(self, operation: str, params: dict, region: str, answer: dict) -> dict:
        self.tick(now())
        if operation == "CreateService":
            service = answer.get("service") or {}
            rollout = self._rollout(region, params.get("cluster", "default"), service.get("serviceName", ""), new=True)
            if rollout is not None:
                rollout.configuration = _configuration(params.get("deploymentConfiguration"))
                self._decorate(rollout, service)
        elif operation == "UpdateService":
            service = answer.get("service") or {}
            rollout = self._rollout(region, params.get("cluster", "default"), service.get("serviceName", ""))
            if rollout is not None:
                if params.get("deploymentConfiguration"):
                    rollout.configuration = _configuration(params["deploymentConfiguration"])
                target = self._task_definition_arn(region, service.get("taskDefinition"))
                primary = rollout.primary
                if params.get("taskDefinition") and (primary is None or primary["taskDefinition"] != target):
                    self._start(rollout, target, now())
                elif params.get("forceNewDeployment"):
                    self._start(rollout, primary["taskDefinition"] if primary else target, now())
                self._decorate(rollout, service)
        elif operation == "DescribeServices":
            for service in answer.get("services") or []:
                cluster = service.get("clusterArn", "").rsplit("/", 1)[-1]
                rollout = self._rollout(region, cluster, service.get("serviceName", ""))
                if rollout is not None:
                    self._decorate(rollout, service)
        return answer

    def _rollout(self, region: str, cluster: str, name: str, new: bool = False) -> Rollout | None:
        """The tracked service, tracked from moto's on first sight (a `new` one deploys its task definition,
        another one is taken as steady); None if it is not ECS-controlled."""
        cluster, name = str(cluster).rsplit("/", 1)[-1], str(name).rsplit("/", 1)[-1]
        key = (region, cluster, name)
        if key in self.services:
            return self.services[key]
        service = backend("ecs", region).services.get(f"{cluster}:{name}")
        if service is None or (service.deployment_controller or {}).get("type", "ECS") != "ECS":
            return None
        rollout = self.services[key] = Rollout(region, cluster, name, _configuration(None))
        at = now()
        first = self._start(rollout, self._task_definition_arn(region, service.task_definition), at)
        if not new:
            self._complete(rollout, first, at)
        return rollout

    def _task_definition_arn(self, region: str, name_or_arn: str | None) -> str:
        if not name_or_arn:
            raise ApiError("InvalidParameterException", "The service has no task definition")
        try:
            return backend("ecs", region).describe_task_definition(str(name_or_arn)).arn
        except Exception as error:
            raise ApiError("ClientException", f"Unable to describe task definition {name_or_arn}") from error

    def _decorate(self, rollout: Rollout, service: dict) -> None:
        service["deployments"] = copy.deepcopy(rollout.deployments)
        service["deploymentConfiguration"] = copy.deepcopy(rollout.configuration)
        service["events"] = copy.deepcopy(rollout.events[:20])
        if rollout.primary:
            service["taskDefinition"] = rollout.primary["taskDefinition"]

    # ---- lifecycle -------------------------------------------------------------------------

    def _start(self, rollout: Rollout, task_definition: str, at: float) -> dict:
        service = backend("ecs", rollout.region).services[f"{rollout.cluster}:{rollout.name}"]
        service.task_definition = task_definition  # the service runs it from now on, as in ECS
        for deployment in rollout.deployments:
            if deployment["status"] == "PRIMARY":
                deployment.update(status="ACTIVE", updatedAt=ts(at))
        deployment_id = f"ecs-svc/{random.randrange(10**18, 10**19)}"
        deployment = {
            "id": deployment_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": service.desired_count,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": ts(at),
            "updatedAt": ts(at),
            "launchType": service.launch_type or "EC2",
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
        }
        rollout.deployments.insert(0, deployment)
        rollout.started[deployment_id] = at
        fault = self.faults.for_ecs_service(rollout.cluster, rollout.name)
        bad_revision = rollout.last_completed is not None and task_definition != rollout.last_completed
        rollout.modes[deployment_id] = fault["mode"] if fault and bad_revision else None
        return deployment

    def tick(self, at: float) -> None:
        for rollout in list(self.services.values()):
            try:
                self._advance(rollout, at)
            except Exception:  # one broken service must not stop the others
                log.exception("advancing ECS service %s/%s", rollout.cluster, rollout.name)

    def _advance(self, rollout: Rollout, at: float) -> None:
        deployment = rollout.primary
        if deployment is None or deployment["rolloutState"] != "IN_PROGRESS":
            return
        mode = rollout.modes.get(deployment["id"])
        started = rollout.started[deployment["id"]]
        if mode == "hang":
            return
        if mode == "fail":
            if at < started + self.deploy_seconds / 2 or deployment["failedTasks"]:
                return
            self._fail(rollout, deployment, started + self.deploy_seconds / 2)
            return
        if at >= started + self.deploy_seconds:
            self._complete(rollout, deployment, started + self.deploy_seconds)

    def _complete(self, rollout: Rollout, deployment: dict, at: float) -> None:
        deployment.update(
            rolloutState="COMPLETED",
            rolloutStateReason=f"ECS deployment {deployment['id']} completed.",
            runningCount=deployment["desiredCount"],
            pendingCount=0,
            updatedAt=ts(at),
        )
        rollout.last_completed = deployment["taskDefinition"]
        rollout.deployments = [deployment]  # ECS drops the older deployments once they are drained
        self._event(rollout, at, f"(service {rollout.name}) has reached a steady state.")

    def _fail(self, rollout: Rollout, deployment: dict, at: float) -> None:
        deployment.update(failedTasks=deployment["desiredCount"], pendingCount=0, updatedAt=ts(at))
        breaker = rollout.configuration.get("deploymentCircuitBreaker") or {}
        if not breaker.get("enable"):
            return  # ECS keeps launching tasks: IN_PROGRESS until someone changes the service
        deployment.update(rolloutState="FAILED", rolloutStateReason=CIRCUIT_BREAKER_REASON)
        self._event(
            rollout,
            at,
            f"(service {rollout.name}) (deployment {deployment['id']}) deployment failed: tasks failed to start.",
        )
        if breaker.get("rollback") and rollout.last_completed:
            self._start(rollout, rollout.last_completed, at)
            self._event(
                rollout, at, f"(service {rollout.name}) rolling back to task definition {rollout.last_completed}."
            )

    def _event(self, rollout: Rollout, at: float, message: str) -> None:
        rollout.events.insert(0, {"id": f"{random.getrandbits(128):032x}", "createdAt": ts(at), "message": message})


def _configuration(given: dict | None) -> dict:
    configuration = copy.deepcopy(DEFAULT_CONFIGURATION)
    configuration.update(copy.deepcopy(given or {}))
    return configuration
