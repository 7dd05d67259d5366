"""CodeDeploy deployments that take time and change things.

moto keeps applications and deployment groups; this module owns deployments:
lifecycle events over `deploy_seconds`, the Ready wait, stop/continue, faults,
auto-rollback, and the effects AWS would have (Lambda alias moved, ECS service
on the new task definition, group's target revision recorded).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
import string

import yaml

from include.sandbox.common import ApiError, backend, now, throttled, ts
from include.sandbox.faults import Faults
from include.sandbox.resources import ACCOUNT_ID

log = logging.getLogger(__name__)

OPERATIONS = {
    "CreateDeployment",
    "GetDeployment",
    "BatchGetDeployments",
    "StopDeployment",
    "ContinueDeployment",
    "ListDeployments",
    "ListDeploymentTargets",
    "BatchGetDeploymentTargets",
    "GetDeploymentTarget",
    "GetDeploymentConfig",
}

# CodeDeploy's predefined deployment configurations (no custom ones here): name -> compute platform.
PREDEFINED_CONFIGS = {
    **dict.fromkeys(
        ("CodeDeployDefault.OneAtATime", "CodeDeployDefault.HalfAtATime", "CodeDeployDefault.AllAtOnce"), "Server"
    ),
    **dict.fromkeys(
        (
            "CodeDeployDefault.ECSAllAtOnce",
            "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
            "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
            "CodeDeployDefault.ECSCanary10Percent5Minutes",
            "CodeDeployDefault.ECSCanary10Percent15Minutes",
        ),
        "ECS",
    ),
    **dict.fromkeys(
        (
            "CodeDeployDefault.LambdaAllAtOnce",
            "CodeDeployDefault.LambdaCanary10Percent5Minutes",
            "CodeDeployDefault.LambdaCanary10Percent10Minutes",
            "CodeDeployDefault.LambdaCanary10Percent15Minutes",
            "CodeDeployDefault.LambdaCanary10Percent30Minutes",
            "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
            "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes",
            "CodeDeployDefault.LambdaLinear10PercentEvery3Minutes",
            "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes",
        ),
        "Lambda",
    ),
}

EC2_EVENTS = [
    "ApplicationStop",
    "DownloadBundle",
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
]
EVENTS = {
    "ECS": [
        "BeforeInstall",
        "Install",
        "AfterInstall",
        "AllowTestTraffic",
        "AfterAllowTestTraffic",
        "BeforeAllowTraffic",
        "AllowTraffic",
        "AfterAllowTraffic",
    ],
    "Lambda": ["BeforeAllowTraffic", "AllowTraffic", "AfterAllowTraffic"],
    "Server": EC2_EVENTS,
    "ServerBlueGreen": EC2_EVENTS
    + [
        "BeforeAllowTraffic",
        "AllowTraffic",
        "AfterAllowTraffic",
        "BeforeBlockTraffic",
        "BlockTraffic",
        "AfterBlockTraffic",
    ],
}
# Where a STOP_DEPLOYMENT group waits in Ready: before production traffic moves.
READY_AFTER = {"ECS": "AfterAllowTestTraffic", "ServerBlueGreen": "ValidateService"}
# The validation hook a "fail" fault breaks unless the fault names another event.
DEFAULT_FAILING_EVENT = {
    "ECS": "AfterAllowTestTraffic",
    "Lambda": "BeforeAllowTraffic",
    "Server": "ValidateService",
    "ServerBlueGreen": "ValidateService",
}
# The sample app's appspec.yml hooks, for EC2 diagnostics.
EC2_SCRIPTS = {
    "ApplicationStop": "scripts/stop_server.sh",
    "BeforeInstall": "scripts/install_dependencies.sh",
    "AfterInstall": "scripts/configure.sh",
    "ApplicationStart": "scripts/start_server.sh",
    "ValidateService": "scripts/validate_service.sh",
}
CREATED_SHARE = 0.1  # of deploy_seconds spent in Created before InProgress


class EffectError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class Deployment:
    def __init__(self, doc: dict, region: str, kind: str, group, fault: dict | None):
        self.doc = doc
        self.region = region
        self.kind = kind
        self.group = group  # moto's DeploymentGroup
        self.created = doc["createTime"]
        self.events = [{"lifecycleEventName": name, "status": "Pending"} for name in EVENTS[kind]]
        self.index = -1
        self.event_started = 0.0
        self.mode = fault["mode"] if fault and fault["mode"] in ("fail", "hang") else None
        wanted = (fault or {}).get("event")
        self.fault_event = wanted if wanted in EVENTS[kind] else DEFAULT_FAILING_EVENT[kind]
        self.undo: list = []  # reversals of effects already applied, for rollback
        self.termination_deadline: float | None = None
        self.invalid: str | None = None
        self.appspec: dict = {}
        self.targets: list[str] = []
        self.done = False

    @property
    def key(self) -> tuple[str, str, str]:
        return self.region, self.doc["applicationName"], self.doc["deploymentGroupName"]


class CodeDeployEmulator:
    def __init__(self, faults: Faults, deploy_seconds: float):
        self.faults = faults
        self.deploy_seconds = deploy_seconds
        self.reset()

    def reset(self) -> None:
        self.deployments: dict[str, Deployment] = {}
        # (region, application, group) -> targetRevision / lastSuccessfulDeployment / lastAttemptedDeployment
        self.groups: dict[tuple[str, str, str], dict] = {}

    # ---- API ---------------------------------------------------------------

    def handle(self, operation: str, params: dict, region: str, caller: str) -> dict:
        if self.faults.should_throttle("codedeploy", self._targets_concerned(operation, params)):
            raise throttled()
        self.tick(now())
        return getattr(self, _snake(operation))(params, region)

    def throttle_check(self, operation: str, params: dict) -> None:
        """For calls moto answers (GetDeploymentGroup): throttled groups still refuse some."""
        if operation == "GetDeploymentGroup":
            app, group = params.get("applicationName", ""), params.get("deploymentGroupName", "")
            if self.faults.should_throttle("codedeploy", [f"{app}/{group}", app]):
                raise throttled()

    def decorate_group(self, body: dict, region: str) -> dict:
        """Fill what moto leaves empty in GetDeploymentGroup from our records."""
        info = body.get("deploymentGroupInfo") or {}
        state = self.groups.get((region, info.get("applicationName"), info.get("deploymentGroupName")))
        if state:
            info.update(state)
        return body

    def _targets_concerned(self, operation: str, params: dict) -> list[str]:
        if operation in ("CreateDeployment", "ListDeployments"):
            app, group = params.get("applicationName", ""), params.get("deploymentGroupName", "")
            return [f"{app}/{group}", app]
        ids = params.get("deploymentIds") or [params.get("deploymentId")]
        result = []
        for deployment_id in ids:
            deployment = self.deployments.get(str(deployment_id))
            if deployment:
                _, app, group = deployment.key
                result += [f"{app}/{group}", app]
        return result

    def get_deployment_config(self, params: dict, region: str) -> dict:
        name = str(params.get("deploymentConfigName") or "")
        if not name:
            raise ApiError("DeploymentConfigNameRequiredException", "Deployment config name must be specified")
        if name not in PREDEFINED_CONFIGS:
            raise ApiError("DeploymentConfigDoesNotExistException", f"Deployment config {name} does not exist")
        return {
            "deploymentConfigInfo": {
                "deploymentConfigName": name,
                "computePlatform": PREDEFINED_CONFIGS[name],
            }
        }

    def create_deployment(self, params: dict, region: str) -> dict:
        app_name = params.get("applicationName")
        group_name = params.get("deploymentGroupName")
        if not app_name:
            raise ApiError("ApplicationNameRequiredException", "Application name must be specified")
        if not group_name:
            raise ApiError("DeploymentGroupNameRequiredException", "Deployment Group name must be specified")
        cd = backend("codedeploy", region)
        application = cd.applications.get(app_name)
        if application is None:
            raise ApiError("ApplicationDoesNotExistException", f"No application found for name: {app_name}")
        group = cd.deployment_groups.get(app_name, {}).get(group_name)
        if group is None:
            raise ApiError("DeploymentGroupDoesNotExistException", f"No Deployment Group found for name: {group_name}")
        revision = params.get("revision")
        if not revision:
            raise ApiError("RevisionRequiredException", "Revision must be specified")
        if params.get("deploymentConfigName"):
            self.get_deployment_config(params, region)  # an unknown configuration is refused, as by AWS

        platform = application.compute_platform or "Server"
        style = group.deployment_style or {}
        kind = platform
        if platform == "Server":
            kind = "ServerBlueGreen" if style.get("deploymentType") == "BLUE_GREEN" else "Server"
        at = now()
        deployment_id = "d-" + "".join(random.choices(string.ascii_uppercase + string.digits, k=9))
        rollback = params.get("autoRollbackConfiguration") or group.auto_rollback_configuration or {}
        state = self.groups.get((region, app_name, group_name), {})
        doc = {
            "applicationName": app_name,
            "deploymentGroupName": group_name,
            "deploymentConfigName": str(params.get("deploymentConfigName") or group.deployment_config_name),
            "deploymentId": deployment_id,
            "revision": revision,
            "status": "Created",
            "createTime": ts(at),
            "deploymentOverview": _overview(),
            "creator": "user",
            "ignoreApplicationStopFailures": bool(params.get("ignoreApplicationStopFailures", False)),
            "autoRollbackConfiguration": rollback,
            "updateOutdatedInstancesOnly": bool(params.get("updateOutdatedInstancesOnly", False)),
            "deploymentStyle": style or {"deploymentType": "IN_PLACE", "deploymentOption": "WITHOUT_TRAFFIC_CONTROL"},
            "instanceTerminationWaitTimeStarted": False,
            "computePlatform": platform,
            "deploymentStatusMessages": [],
        }
        for field, value in (
            ("description", params.get("description")),
            ("fileExistsBehavior", params.get("fileExistsBehavior")),
            ("targetInstances", params.get("targetInstances")),
            ("previousRevision", state.get("targetRevision")),
            ("blueGreenDeploymentConfiguration", group.blue_green_deployment_configuration),
            ("loadBalancerInfo", group.load_balancer_info),
        ):
            if value:
                doc[field] = copy.deepcopy(value)

        deployment = Deployment(doc, region, kind, group, self.faults.for_group(app_name, group_name))
        if kind in ("ECS", "Lambda"):
            try:
                deployment.appspec = parse_appspec(revision)
            except ValueError as error:
                deployment.invalid = str(error)
        deployment.targets = self._target_ids(deployment)
        doc["deploymentOverview"]["Pending"] = len(deployment.targets)
        self.deployments[deployment_id] = deployment
        self._group_state(deployment)["lastAttemptedDeployment"] = self._summary(deployment)
        return {"deploymentId": deployment_id}

    def get_deployment(self, params: dict, region: str) -> dict:
        return {"deploymentInfo": self._deployment(params, region).doc}

    def batch_get_deployments(self, params: dict, region: str) -> dict:
        ids = params.get("deploymentIds") or []
        if len(ids) > 25:
            raise ApiError("BatchLimitExceededException", "The maximum number of deployment IDs is 25")
        found = [self.deployments[i] for i in ids if i in self.deployments]
        return {"deploymentsInfo": [d.doc for d in found if d.region == region]}

    def stop_deployment(self, params: dict, region: str) -> dict:
        deployment = self._deployment(params, region)
        if deployment.done:
            raise ApiError(
                "DeploymentAlreadyCompletedException",
                f"The deployment {deployment.doc['deploymentId']} has already completed.",
            )
        at = now()
        self._end_events(deployment, at, "Failed")
        rolled_back = bool(params.get("autoRollbackEnabled"))
        self._finish(
            deployment,
            at,
            "Stopped",
            {"code": "MANUAL_STOP", "message": "The deployment was stopped by a StopDeployment request."},
            rollback=rolled_back,
        )
        message = "Stopping active deployment" + (" and rolling back" if rolled_back else "")
        return {"status": "Succeeded", "statusMessage": message}

    def continue_deployment(self, params: dict, region: str) -> dict:
        deployment = self._deployment(params, region)
        wait = params.get("deploymentWaitType") or "READY_WAIT"
        at = now()
        if wait == "READY_WAIT":
            if deployment.doc["status"] != "Ready":
                raise ApiError(
                    "DeploymentIsNotInReadyStateException",
                    f"The deployment {deployment.doc['deploymentId']} is not in the Ready state.",
                )
            deployment.doc["status"] = "InProgress"
            deployment.doc["deploymentOverview"] = _overview(InProgress=len(deployment.targets))
            self._start_event(deployment, at)
        elif wait == "TERMINATION_WAIT":
            if deployment.termination_deadline is None or deployment.done:
                raise ApiError(
                    "DeploymentIsNotInReadyStateException",
                    f"The deployment {deployment.doc['deploymentId']} is not waiting for termination.",
                )
            deployment.termination_deadline = at
            self._advance(deployment, at)
        else:
            raise ApiError("InvalidDeploymentWaitTypeException", f"Invalid deploymentWaitType: {wait}")
        return {}

    def list_deployments(self, params: dict, region: str) -> dict:
        app_name, group_name = params.get("applicationName"), params.get("deploymentGroupName")
        if app_name and not group_name:
            raise ApiError(
                "DeploymentGroupNameRequiredException",
                "If applicationName is specified, then deploymentGroupName must be specified.",
            )
        if group_name and not app_name:
            raise ApiError(
                "ApplicationNameRequiredException",
                "If deploymentGroupName is specified, applicationName must be specified.",
            )
        cd = backend("codedeploy", region)
        if app_name and app_name not in cd.applications:
            raise ApiError("ApplicationDoesNotExistException", f"No application found for name: {app_name}")
        if group_name and group_name not in cd.deployment_groups.get(app_name, {}):
            raise ApiError("DeploymentGroupDoesNotExistException", f"No Deployment Group found for name: {group_name}")
        statuses = params.get("includeOnlyStatuses") or []
        window = params.get("createTimeRange") or {}
        found = []
        for d in sorted(self.deployments.values(), key=lambda d: d.created, reverse=True):
            if d.region != region or (app_name and d.key[1:] != (app_name, group_name)):
                continue
            if statuses and d.doc["status"] not in statuses:
                continue
            if ("start" in window and d.created < window["start"]) or ("end" in window and d.created > window["end"]):
                continue
            found.append(d.doc["deploymentId"])
        return {"deployments": found}

    def list_deployment_targets(self, params: dict, region: str) -> dict:
        deployment = self._deployment(params, region)
        wanted = (params.get("targetFilters") or {}).get("TargetStatus")
        ids = [t for t in deployment.targets if not wanted or self._target_status(deployment) in wanted]
        return {"targetIds": ids}

    def batch_get_deployment_targets(self, params: dict, region: str) -> dict:
        deployment = self._deployment(params, region)
        return {"deploymentTargets": [self._target(deployment, t) for t in params.get("targetIds") or []]}

    def get_deployment_target(self, params: dict, region: str) -> dict:
        deployment = self._deployment(params, region)
        return {"deploymentTarget": self._target(deployment, params.get("targetId"))}

    def _deployment(self, params: dict, region: str) -> Deployment:
        deployment_id = params.get("deploymentId")
        if not deployment_id:
            raise ApiError("DeploymentIdRequiredException", "Deployment ID must be specified")
        deployment = self.deployments.get(deployment_id)
        if deployment is None or deployment.region != region:
            raise ApiError("DeploymentDoesNotExistException", f"The deployment {deployment_id} could not be found.")
        return deployment

    # ---- targets ------------------------------------------------------------

    def _target_ids(self, deployment: Deployment) -> list[str]:
        if deployment.kind == "ECS":
            return [f"{s['clusterName']}:{s['serviceName']}" for s in deployment.group.ecs_services] or ["unknown"]
        if deployment.kind == "Lambda":
            props = lambda_properties(deployment.appspec)
            return [f"{props.get('Name', 'unknown')}:{props.get('Alias', 'unknown')}"]
        # EC2: one replacement (or in-place) instance per instance in the group's Auto Scaling groups.
        count = 0
        for name in deployment.group.auto_scaling_groups:
            asg = backend("autoscaling", deployment.region).autoscaling_groups.get(name)
            count += len(asg.instance_states) if asg else 0
        seed = deployment.doc["deploymentId"]
        return ["i-" + hashlib.sha1(f"{seed}{n}".encode()).hexdigest()[:17] for n in range(max(count, 1))]

    def _target_status(self, deployment: Deployment) -> str:
        status = deployment.doc["status"]
        return {"Created": "Pending", "Stopped": "Failed"}.get(status, status)

    def _target(self, deployment: Deployment, target_id: str) -> dict:
        if target_id not in deployment.targets:
            raise ApiError("DeploymentTargetDoesNotExistException", f"The target {target_id} could not be found.")
        region, doc = deployment.region, deployment.doc
        common = {
            "deploymentId": doc["deploymentId"],
            "targetId": target_id,
            "status": self._target_status(deployment),
            "lastUpdatedAt": doc.get("completeTime") or doc.get("startTime") or doc["createTime"],
            "lifecycleEvents": deployment.events,
        }
        if deployment.kind == "ECS":
            cluster, service = target_id.split(":", 1)
            arn = f"arn:aws:ecs:{region}:{ACCOUNT_ID}:service/{cluster}/{service}"
            return {"deploymentTargetType": "ECSTarget", "ecsTarget": {**common, "targetArn": arn}}
        if deployment.kind == "Lambda":
            props = lambda_properties(deployment.appspec)
            arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{target_id}"
            info = {
                "functionName": props.get("Name"),
                "functionAlias": props.get("Alias"),
                "currentVersion": str(props.get("CurrentVersion")),
                "targetVersion": str(props.get("TargetVersion")),
                "targetVersionWeight": 1.0 if doc["status"] == "Succeeded" else 0.0,
            }
            return {
                "deploymentTargetType": "LambdaTarget",
                "lambdaTarget": {**common, "targetArn": arn, "lambdaFunctionInfo": info},
            }
        arn = f"arn:aws:ec2:{region}:{ACCOUNT_ID}:instance/{target_id}"
        target = {**common, "targetArn": arn}
        if deployment.kind == "ServerBlueGreen":
            target["instanceLabel"] = "Green"
        return {"deploymentTargetType": "InstanceTarget", "instanceTarget": target}

    # ---- lifecycle ---------------------------------------------------------

    def tick(self, at: float) -> None:
        for deployment in list(self.deployments.values()):
            if not deployment.done:
                try:
                    self._advance(deployment, at)
                except Exception:  # one broken deployment must not stop the others
                    log.exception("advancing deployment %s", deployment.doc["deploymentId"])

    def _step(self, deployment: Deployment) -> float:
        return self.deploy_seconds * (1 - CREATED_SHARE) / len(deployment.events)

    def _advance(self, deployment: Deployment, at: float) -> None:
        doc = deployment.doc
        while not deployment.done:
            if doc["status"] == "Created":
                begin = deployment.created + CREATED_SHARE * self.deploy_seconds
                if begin > at:
                    return
                doc.update(
                    status="InProgress",
                    startTime=ts(begin),
                    deploymentOverview=_overview(InProgress=len(deployment.targets)),
                )
                deployment.index = 0
                self._start_event(deployment, begin)
                if deployment.invalid:
                    self._fail(deployment, begin, "INVALID_REVISION", deployment.invalid)
                continue
            if doc["status"] == "Ready":
                return
            if deployment.termination_deadline is not None:
                if deployment.termination_deadline > at:
                    return
                self._finish(deployment, deployment.termination_deadline, "Succeeded")
                return
            event = deployment.events[deployment.index]
            if deployment.mode == "hang" and event["lifecycleEventName"] == deployment.fault_event:
                return
            end = deployment.event_started + self._step(deployment)
            if end > at:
                return
            self._finish_event(deployment, end)

    def _start_event(self, deployment: Deployment, at: float) -> None:
        deployment.event_started = at
        deployment.events[deployment.index].update(status="InProgress", startTime=ts(at))

    def _finish_event(self, deployment: Deployment, at: float) -> None:
        event = deployment.events[deployment.index]
        name = event["lifecycleEventName"]
        if deployment.mode == "fail" and name == deployment.fault_event:
            self._fail_hook(deployment, at, name)
            return
        if name == "AllowTraffic":
            try:
                self._shift_traffic(deployment)
            except EffectError as error:
                self._fail(deployment, at, error.code, str(error))
                return
        event.update(
            status="Succeeded",
            endTime=ts(at),
            diagnostics={"errorCode": "Success", "scriptName": "", "message": "Succeeded", "logTail": ""},
        )
        if deployment.index == len(deployment.events) - 1:
            self._all_events_done(deployment, at)
            return
        deployment.index += 1
        if name == READY_AFTER.get(deployment.kind) and self._waits_for_ready(deployment):
            deployment.doc.update(status="Ready", deploymentOverview=_overview(Ready=len(deployment.targets)))
            return
        self._start_event(deployment, at)

    def _waits_for_ready(self, deployment: Deployment) -> bool:
        option = (deployment.group.blue_green_deployment_configuration or {}).get("deploymentReadyOption") or {}
        return option.get("actionOnTimeout") == "STOP_DEPLOYMENT"

    def _all_events_done(self, deployment: Deployment, at: float) -> None:
        # A blue/green group may keep the original fleet for a while; ContinueDeployment ends that early.
        terminate = (deployment.group.blue_green_deployment_configuration or {}).get(
            "terminateBlueInstancesOnDeploymentSuccess"
        ) or {}
        minutes = terminate.get("terminationWaitTimeInMinutes") or 0
        if terminate.get("action") == "TERMINATE" and minutes > 0 and deployment.kind != "Lambda":
            deployment.termination_deadline = at + minutes * 60
            deployment.doc["instanceTerminationWaitTimeStarted"] = True
            return
        self._finish(deployment, at, "Succeeded")

    def _fail_hook(self, deployment: Deployment, at: float, name: str) -> None:
        event = deployment.events[deployment.index]
        if deployment.kind in ("ECS", "Lambda"):
            hook = hook_function(deployment.appspec, name)
            detail = f"hook function {hook} reported Failed: smoke test GET /health returned HTTP 500"
            event["diagnostics"] = {
                "errorCode": "ScriptFailed",
                "scriptName": hook,
                "message": detail,
                "logTail": "GET /health -> 500 Internal Server Error\n",
            }
            message = (
                f"The deployment failed because a specified lifecycle event hook failed: {name} {detail} "
                "(sandbox fault: fail)"
            )
            code = "HOOK_EXECUTION_FAILURE"
        else:
            script = EC2_SCRIPTS.get(name, f"scripts/{name}.sh")
            detail = f"Script at specified location: {script} run as user root failed with exit code 1"
            event["diagnostics"] = {
                "errorCode": "ScriptFailed",
                "scriptName": script,
                "message": detail,
                "logTail": "[stderr]curl: (22) The requested URL returned error: 503\n",
            }
            message = (
                "The overall deployment failed because too many individual instances failed deployment, "
                "too few healthy instances are available for deployment, or some instances in your "
                f"deployment group are experiencing problems. Lifecycle event {name} failed on "
                f"{deployment.targets[0]}: {detail} (sandbox fault: fail)"
            )
            code = "HEALTH_CONSTRAINTS"
        self._fail(deployment, at, code, message)

    def _fail(self, deployment: Deployment, at: float, code: str, message: str) -> None:
        self._end_events(deployment, at, "Failed")
        events = deployment.doc["autoRollbackConfiguration"] or {}
        rollback = bool(events.get("enabled")) and "DEPLOYMENT_FAILURE" in (events.get("events") or [])
        self._finish(deployment, at, "Failed", {"code": code, "message": message}, rollback=rollback)

    def _end_events(self, deployment: Deployment, at: float, status: str) -> None:
        """The running event ends with `status`; the ones not reached are Skipped."""
        for event in deployment.events:
            if event["status"] == "InProgress":
                event.update(status=status, endTime=ts(at))
            elif event["status"] == "Pending":
                event["status"] = "Skipped"

    def _finish(
        self, deployment: Deployment, at: float, status: str, error: dict | None = None, rollback: bool = False
    ) -> None:
        doc = deployment.doc
        deployment.done = True
        count = len(deployment.targets)
        overview = {
            "Succeeded": _overview(Succeeded=count),
            "Failed": _overview(Failed=count),
            "Stopped": _overview(Skipped=count),
        }[status]
        doc.update(status=status, completeTime=ts(at), deploymentOverview=overview)
        doc.setdefault("startTime", ts(at))
        if error:
            doc["errorInformation"] = error
        state = self._group_state(deployment)
        if status == "Succeeded":
            state["targetRevision"] = doc["revision"]
            deployment.group.target_revision = doc["revision"]  # also on moto's model, for in-process readers
            state["lastSuccessfulDeployment"] = self._summary(deployment)
        elif rollback:
            self._roll_back(deployment, at)
        state["lastAttemptedDeployment"] = self._summary(deployment)

    def _roll_back(self, deployment: Deployment, at: float) -> None:
        for undo in reversed(deployment.undo):
            try:
                undo()
            except Exception:
                log.exception("rolling back %s", deployment.doc["deploymentId"])
        deployment.undo.clear()
        original = deployment.doc
        rollback_id = "d-" + "".join(random.choices(string.ascii_uppercase + string.digits, k=9))
        doc = copy.deepcopy(original)
        previous = original.get("previousRevision") or original["revision"]
        doc.update(
            deploymentId=rollback_id,
            creator="codeDeployRollback",
            revision=previous,
            status="Succeeded",
            createTime=ts(at),
            startTime=ts(at),
            completeTime=ts(at),
            deploymentOverview=_overview(Succeeded=len(deployment.targets)),
            rollbackInfo={
                "rollbackTriggeringDeploymentId": original["deploymentId"],
                "rollbackMessage": f"Rollback of deployment {original['deploymentId']}",
            },
        )
        doc.pop("errorInformation", None)
        doc.pop("previousRevision", None)
        twin = Deployment(doc, deployment.region, deployment.kind, deployment.group, None)
        twin.targets, twin.appspec, twin.done = deployment.targets, deployment.appspec, True
        for event in twin.events:
            event.update(status="Succeeded", startTime=ts(at), endTime=ts(at))
        self.deployments[rollback_id] = twin
        original["rollbackInfo"] = {
            "rollbackDeploymentId": rollback_id,
            "rollbackMessage": (
                f"Automatic rollback: deployment {original['deploymentId']} {original['status'].lower()},"
                f" previous revision restored by deployment {rollback_id}"
            ),
        }

    def _group_state(self, deployment: Deployment) -> dict:
        return self.groups.setdefault(deployment.key, {})

    def _summary(self, deployment: Deployment) -> dict:
        doc = deployment.doc
        summary = {"deploymentId": doc["deploymentId"], "status": doc["status"], "createTime": doc["createTime"]}
        if "completeTime" in doc:
            summary["endTime"] = doc["completeTime"]
        return summary

    # ---- effects -------------------------------------------------------------

    def _shift_traffic(self, deployment: Deployment) -> None:
        if deployment.kind == "Lambda":
            self._shift_lambda(deployment)
        elif deployment.kind == "ECS":
            self._shift_ecs(deployment)

    def _shift_lambda(self, deployment: Deployment) -> None:
        props = lambda_properties(deployment.appspec)
        name, alias, target = props.get("Name"), props.get("Alias"), props.get("TargetVersion")
        if not (name and alias and target):
            raise EffectError(
                "INVALID_LAMBDA_CONFIGURATION", "The AppSpec must give the function's Name, Alias and TargetVersion"
            )
        lam = backend("lambda", deployment.region)
        try:
            previous = lam.get_alias(alias, name).function_version
            lam.update_alias(alias, name, str(target), None, None)
        except Exception as error:
            raise EffectError(
                "INVALID_LAMBDA_FUNCTION", f"Could not move alias {alias} of {name} to version {target}: {error}"
            ) from error
        deployment.undo.append(lambda: lam.update_alias(alias, name, previous, None, None))

    def _shift_ecs(self, deployment: Deployment) -> None:
        props = ecs_properties(deployment.appspec)
        definition = props.get("TaskDefinition")
        if not definition:
            raise EffectError("INVALID_REVISION", "The AppSpec must give the TargetService's TaskDefinition")
        ecs = backend("ecs", deployment.region)
        try:
            task_definition = ecs.describe_task_definition(str(definition))
        except Exception as error:
            raise EffectError("ECS_UPDATE_ERROR", f"Task definition {definition} not found: {error}") from error
        container = (props.get("LoadBalancerInfo") or {}).get("ContainerName")
        names = [c.get("name") for c in task_definition.container_definitions]
        if container and container not in names:
            raise EffectError(
                "ECS_UPDATE_ERROR", f"The container {container} does not exist in the task definition {definition}"
            )
        for target in deployment.group.ecs_services:
            cluster, service_name = target["clusterName"], target["serviceName"]
            service = ecs.services.get(f"{cluster}:{service_name}")
            if service is None:
                raise EffectError("INVALID_ECS_SERVICE", f"The ECS service {service_name} in {cluster} was not found")
            previous = service.task_definition
            ecs.update_service({"cluster": cluster, "service": service_name, "task_definition": task_definition.arn})
            deployment.undo.append(
                lambda c=cluster, s=service_name, p=previous: ecs.update_service(
                    {"cluster": c, "service": s, "task_definition": p}
                )
            )


# ---- AppSpec -------------------------------------------------------------------


def parse_appspec(revision: dict) -> dict:
    kind = revision.get("revisionType")
    if kind == "AppSpecContent":
        text = (revision.get("appSpecContent") or {}).get("content")
    elif kind == "String":
        text = (revision.get("string") or {}).get("content")
    else:
        raise ValueError(f"revisionType {kind} is not supported for this compute platform; use AppSpecContent")
    try:
        spec = yaml.safe_load(text or "")  # JSON is YAML too
    except yaml.YAMLError as error:
        raise ValueError(f"The AppSpec content is not valid YAML or JSON: {error}") from error
    if not isinstance(spec, dict) or not isinstance(spec.get("Resources"), list):
        raise ValueError("The AppSpec content has no Resources list")
    return spec


def _resource(appspec: dict, resource_type: str) -> dict:
    for entry in appspec.get("Resources") or []:
        for resource in (entry or {}).values():
            if isinstance(resource, dict) and resource.get("Type") == resource_type:
                return resource.get("Properties") or {}
    return {}


def lambda_properties(appspec: dict) -> dict:
    return _resource(appspec, "AWS::Lambda::Function")


def ecs_properties(appspec: dict) -> dict:
    return _resource(appspec, "AWS::ECS::Service")


def hook_function(appspec: dict, event: str) -> str:
    for hook in appspec.get("Hooks") or []:
        if isinstance(hook, dict) and event in hook:
            return str(hook[event])
    return f"CodeDeployHook_{event}"


def _overview(**counts) -> dict:
    overview = {"Pending": 0, "InProgress": 0, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0}
    overview.update(counts)
    return overview


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
