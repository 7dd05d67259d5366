"""Elastic Beanstalk environments that deploy application versions over time.

moto keeps applications and environments but no application versions, no updates and no events, and
its environments have no id, CNAME or real status. This module answers those operations itself, in
Elastic Beanstalk's query protocol (form-encoded requests, XML answers shaped by botocore's model of
the service), keeping its state on moto's own objects so moto's reset clears it too:

- CreateApplicationVersion (the bundle must exist in S3), DescribeApplicationVersions, DescribeApplications.
- CreateEnvironment, DescribeEnvironments (by application, names, ids).
- UpdateEnvironment to a version: Updating for `deploy_seconds`, then Ready / Green on it; with a fault
  `fail` it ends Ready / Red still on the new version, with `rollback` back on the previous one
  (health Yellow), both with ERROR events; `hang` stays Updating until aborted.
- AbortEnvironmentUpdate: Aborting, then Ready on the previous version at the next tick.
- DescribeEvents (newest first; by environment, severity and time).
"""

from __future__ import annotations

import random
import string
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from moto.core.serialize import get_serializer_class
from moto.core.utils import get_service_model
from moto.elasticbeanstalk.models import eb_backends

from include.sandbox.common import ApiError, backend
from include.sandbox.faults import Faults
from include.sandbox.resources import ACCOUNT_ID

OPERATIONS = {
    "AbortEnvironmentUpdate",
    "CreateApplicationVersion",
    "CreateEnvironment",
    "DescribeApplicationVersions",
    "DescribeApplications",
    "DescribeEnvironments",
    "DescribeEvents",
    "UpdateEnvironment",
}
SEVERITIES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SOLUTION_STACK = "64bit Amazon Linux 2023 v4.3.0 running Python 3.11"
XMLNS = "http://elasticbeanstalk.amazonaws.com/docs/2010-12-01/"


def parse_form(body: bytes) -> dict[str, Any]:
    """Query-protocol parameters: lists ``Name.member.N`` become lists, ``A.B`` stays a flat key."""
    flat = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    params: dict[str, Any] = {}
    members: dict[str, dict[int, str]] = {}
    for key, value in flat.items():
        name, sep, index = key.partition(".member.")
        if sep and index.isdigit():
            members.setdefault(name, {})[int(index)] = value
        else:
            params[key] = value
    for name, items in members.items():
        params[name] = [items[i] for i in sorted(items)]
    return params


def answer(operation: str, result: dict[str, Any]) -> bytes:
    """The operation's XML answer for ``result`` (a dict shaped like boto3's response)."""
    model = get_service_model("elasticbeanstalk")
    serializer = get_serializer_class("elasticbeanstalk", model.protocol)(model.operation_model(operation))
    body = serializer.serialize(result)["body"]
    return body.replace("<RequestId>request-id</RequestId>", f"<RequestId>{uuid.uuid4()}</RequestId>").encode()


def error_xml(error: ApiError) -> bytes:
    return (
        f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type><Code>{error.code}</Code>'
        f"<Message>{_escape(error.message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterValue", message)


def _moment(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=timezone.utc)


class ElasticBeanstalkEmulator:
    def __init__(self, faults: Faults, deploy_seconds: float):
        self.faults = faults
        self.deploy_seconds = deploy_seconds

    # ---- state on moto's objects ---------------------------------------------------------------------

    def _applications(self, region: str) -> dict[str, Any]:
        return backend("elasticbeanstalk", region).applications

    def _application(self, region: str, name: str) -> Any:
        application = self._applications(region).get(name)
        if application is None:
            raise invalid(f"No Application named '{name}' found.")
        if not hasattr(application, "sandbox_versions"):
            application.sandbox_versions = {}  # label -> ApplicationVersionDescription
            application.sandbox_events = []  # EventDescription, oldest first
        return application

    def _environments(self, region: str):
        for application in list(self._applications(region).values()):
            for environment in list(application.environments.values()):
                yield self._decorated(self._application(region, application.application_name), environment)

    def _decorated(self, application: Any, environment: Any) -> Any:
        """Give an environment moto made an id, a CNAME and a real status the first time it is seen."""
        if not environment.environment_id:
            suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
            environment.environment_id = f"e-{suffix}"
            environment.cname = f"{environment.environment_name}.{application.region}.elasticbeanstalk.com"
            environment.endpoint_url = f"awseb-{suffix}.{application.region}.elb.amazonaws.com"
            environment.version_label = None
            environment.status, environment.health, environment.health_status = "Ready", "Green", "Ok"
            environment.solution_stack_name = SOLUTION_STACK
            environment.update = None  # the update in progress: {"at", "previous", "fault", "aborted"}
        return environment

    def _event(self, environment: Any, at: float, severity: str, message: str) -> None:
        environment.application.sandbox_events.append(
            {
                "EventDate": _moment(at),
                "Message": message,
                "ApplicationName": environment.application_name,
                "EnvironmentName": environment.environment_name,
                "VersionLabel": environment.version_label,
                "Severity": severity,
                "RequestId": str(uuid.uuid4()),
            }
        )

    def describe(self, environment: Any) -> dict[str, Any]:
        out = {
            "EnvironmentName": environment.environment_name,
            "EnvironmentId": environment.environment_id,
            "ApplicationName": environment.application_name,
            "SolutionStackName": environment.solution_stack_name,
            "EndpointURL": environment.endpoint_url,
            "CNAME": environment.cname,
            "DateCreated": environment.date_created,
            "DateUpdated": environment.date_updated,
            "Status": environment.status,
            "AbortableOperationInProgress": environment.update is not None and environment.status == "Updating",
            "Health": environment.health,
            "HealthStatus": environment.health_status,
            "Tier": environment.tier,
            "EnvironmentArn": environment.environment_arn,
        }
        if environment.version_label:
            out["VersionLabel"] = environment.version_label
        return out

    # ---- API -----------------------------------------------------------------------------------------

    def handle(self, operation: str, params: dict, region: str, at: float) -> bytes:
        self.tick(at)
        method = getattr(self, "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_"))
        return answer(operation, method(params, region, at))

    def describe_applications(self, params: dict, region: str, at: float) -> dict:
        names = params.get("ApplicationNames")
        out = []
        for name, application in self._applications(region).items():
            if names and name not in names:
                continue
            versions = getattr(application, "sandbox_versions", {})
            out.append(
                {
                    "ApplicationArn": application.arn,
                    "ApplicationName": name,
                    "Versions": list(versions),
                    "ConfigurationTemplates": [],
                }
            )
        return {"Applications": out}

    def create_application_version(self, params: dict, region: str, at: float) -> dict:
        application = self._application(region, params.get("ApplicationName", ""))
        label = params.get("VersionLabel", "")
        if not label:
            raise invalid("VersionLabel is required.")
        if label in application.sandbox_versions:
            raise invalid(f"Application Version {label} already exists.")
        bucket, key = params.get("SourceBundle.S3Bucket"), params.get("SourceBundle.S3Key")
        if bucket and key:
            try:
                found = backend("s3", "global").get_object(bucket, key)
            except Exception:  # no such bucket
                found = None
            if found is None:
                raise ApiError(
                    "InvalidParameterCombination",
                    f"Unable to download from S3 location (Bucket: {bucket} Key: {key}). Reason: Not Found",
                )
        moment = _moment(at)
        version = {
            "ApplicationVersionArn": f"arn:aws:elasticbeanstalk:{region}:{ACCOUNT_ID}:applicationversion/"
            f"{application.application_name}/{label}",
            "ApplicationName": application.application_name,
            "Description": params.get("Description", ""),
            "VersionLabel": label,
            "SourceBundle": {"S3Bucket": bucket, "S3Key": key} if bucket else {},
            "DateCreated": moment,
            "DateUpdated": moment,
            "Status": "PROCESSED" if params.get("Process") == "true" else "UNPROCESSED",
        }
        application.sandbox_versions[label] = version
        return {"ApplicationVersion": version}

    def describe_application_versions(self, params: dict, region: str, at: float) -> dict:
        labels = params.get("VersionLabels")
        names = [params["ApplicationName"]] if params.get("ApplicationName") else list(self._applications(region))
        out = []
        for name in names:
            versions = getattr(self._applications(region).get(name), "sandbox_versions", {})
            out += [v for label, v in versions.items() if not labels or label in labels]
        return {"ApplicationVersions": sorted(out, key=lambda v: v["DateCreated"], reverse=True)}

    def create_environment(self, params: dict, region: str, at: float) -> dict:
        application = self._application(region, params.get("ApplicationName", ""))
        name = params.get("EnvironmentName", "")
        if name in application.environments:
            raise invalid(f"Environment {name} already exists.")
        label = params.get("VersionLabel")
        if label and label not in application.sandbox_versions:
            raise invalid(f"No Application Version named '{label}' found.")
        environment = self._decorated(application, application.create_environment(name, SOLUTION_STACK, {}))
        environment.version_label = label
        self._event(environment, at, "INFO", "createEnvironment completed successfully.")
        return self.describe(environment)

    def describe_environments(self, params: dict, region: str, at: float) -> dict:
        names, ids = params.get("EnvironmentNames"), params.get("EnvironmentIds")
        out = []
        for environment in self._environments(region):
            if params.get("ApplicationName") and environment.application_name != params["ApplicationName"]:
                continue
            if params.get("VersionLabel") and environment.version_label != params["VersionLabel"]:
                continue
            if names and environment.environment_name not in names:
                continue
            if ids and environment.environment_id not in ids:
                continue
            out.append(self.describe(environment))
        return {"Environments": out}

    def _find(self, params: dict, region: str) -> Any:
        for environment in self._environments(region):
            if params.get("EnvironmentId"):
                if environment.environment_id == params["EnvironmentId"]:
                    return environment
            elif environment.environment_name == params.get("EnvironmentName") and (
                not params.get("ApplicationName") or environment.application_name == params["ApplicationName"]
            ):
                return environment
        which = params.get("EnvironmentId") or params.get("EnvironmentName")
        raise invalid(
            f"No Environment found for {'EnvironmentId' if params.get('EnvironmentId') else 'EnvironmentName'} = '{which}'."
        )

    def update_environment(self, params: dict, region: str, at: float) -> dict:
        environment = self._find(params, region)
        label = params.get("VersionLabel")
        if environment.status != "Ready":
            raise invalid(
                f"Environment named {environment.environment_name} is in an invalid state for this operation. "
                "Must be Ready."
            )
        if label:
            if label not in environment.application.sandbox_versions:
                raise invalid(f"No Application Version named '{label}' found.")
            fault = self.faults.for_environment(environment.application_name, environment.environment_name)
            environment.update = {"at": at, "previous": environment.version_label, "fault": fault}
            environment.version_label = label
            environment.status, environment.health, environment.health_status = "Updating", "Grey", "Pending"
            environment.date_updated = _moment(at)
            self._event(environment, at, "INFO", "Environment update is starting.")
            self._event(environment, at, "INFO", "Deploying new version to instance(s).")
        return self.describe(environment)

    def abort_environment_update(self, params: dict, region: str, at: float) -> dict:
        environment = self._find(params, region)
        if environment.status != "Updating" or environment.update is None:
            raise invalid(f"Environment named {environment.environment_name} has no update in progress to abort.")
        environment.status = "Aborting"
        environment.update["aborted"] = at
        self._event(environment, at, "INFO", "Abort environment update operation is starting.")
        return {}

    def describe_events(self, params: dict, region: str, at: float) -> dict:
        floor = SEVERITIES.index(params.get("Severity", "TRACE"))
        start = datetime.fromisoformat(params["StartTime"].replace("Z", "+00:00")) if params.get("StartTime") else None
        events = []
        for application in self._applications(region).values():
            for event in getattr(application, "sandbox_events", []):
                if params.get("ApplicationName") and event["ApplicationName"] != params["ApplicationName"]:
                    continue
                if params.get("EnvironmentName") and event["EnvironmentName"] != params["EnvironmentName"]:
                    continue
                if params.get("EnvironmentId"):
                    environment = application.environments.get(event["EnvironmentName"])
                    if environment is None or environment.environment_id != params["EnvironmentId"]:
                        continue
                if SEVERITIES.index(event["Severity"]) < floor or (start and event["EventDate"] < _utc(start)):
                    continue
                events.append(event)
        # Newest first; of events made in the same instant, the one recorded last.
        events = sorted(reversed(events), key=lambda e: e["EventDate"], reverse=True)
        return {"Events": events[: int(params.get("MaxRecords", 1000))]}

    # ---- time ----------------------------------------------------------------------------------------

    def tick(self, at: float) -> None:
        for region in list(eb_backends[ACCOUNT_ID]):
            for environment in self._environments(region):
                update = environment.update
                if update is None:
                    continue
                if environment.status == "Aborting":
                    self._settle(environment, at, update["previous"], "Green", "Ok")
                    self._event(environment, at, "INFO", "Abort environment update operation is complete.")
                    continue
                mode = (update["fault"] or {}).get("mode")
                if mode == "hang" or at - update["at"] < self.deploy_seconds:
                    continue
                if mode == "fail":
                    self._event(
                        environment,
                        at,
                        "ERROR",
                        "[Instance: i-0sandbox0001] Command failed on instance. "
                        "Return code: 1 Output: Engine execution has encountered an error.",
                    )
                    self._event(environment, at, "ERROR", "Failed to deploy application.")
                    self._settle(environment, at, environment.version_label, "Red", "Severe")
                elif mode == "rollback":
                    self._event(environment, at, "ERROR", "Failed to deploy application.")
                    self._event(
                        environment, at, "ERROR", f"Rolled back the environment to version {update['previous']}."
                    )
                    self._settle(environment, at, update["previous"], "Yellow", "Warning")
                else:
                    self._event(
                        environment, at, "INFO", "New application version was deployed to running EC2 instances."
                    )
                    self._settle(environment, at, environment.version_label, "Green", "Ok")
                    self._event(environment, at, "INFO", "Environment update completed successfully.")

    @staticmethod
    def _settle(environment: Any, at: float, label: str | None, health: str, health_status: str) -> None:
        environment.version_label = label
        environment.status, environment.health, environment.health_status = "Ready", health, health_status
        environment.date_updated = _moment(at)
        environment.update = None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
