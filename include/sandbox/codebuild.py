"""CodeBuild builds that take time.

moto keeps the projects; this module owns the builds: phases spread over
`build_seconds`, CloudWatch log lines, exported variables from the buildspec's
`export` lines, JUnit reports in S3, and the faults set on a project.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import re
import uuid
import zipfile

import yaml

from include.sandbox.common import ApiError, backend, log_clock, now, throttled, ts
from include.sandbox.faults import Faults
from include.sandbox.resources import ACCOUNT_ID

log = logging.getLogger(__name__)

# Phase and its share of build_seconds. SUBMITTED is instant, as in AWS;
# COMPLETED only marks the end.
PHASES = [
    ("QUEUED", 0.05),
    ("PROVISIONING", 0.12),
    ("DOWNLOAD_SOURCE", 0.06),
    ("INSTALL", 0.13),
    ("PRE_BUILD", 0.10),
    ("BUILD", 0.26),
    ("POST_BUILD", 0.10),
    ("UPLOAD_ARTIFACTS", 0.08),
    ("FINALIZING", 0.10),
]
PHASE_NAMES = [name for name, _ in PHASES]
SPEC_PHASES = {"INSTALL": "install", "PRE_BUILD": "pre_build", "BUILD": "build", "POST_BUILD": "post_build"}

OPERATIONS = {
    "StartBuild",
    "BatchGetBuilds",
    "StopBuild",
    "ListBuildsForProject",
    "ListBuilds",
    "BatchGetReports",
    "DescribeTestCases",
}
IDEMPOTENCY_WINDOW = 300  # seconds, as documented for StartBuild

ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::(\d+)(?::(\d+))?)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")

# The integration suite a test project "runs"; fail-tests makes the last two fail.
TEST_NAMES = [
    "test_health_endpoint",
    "test_homepage_renders",
    "test_login_with_valid_password",
    "test_login_rejects_bad_password",
    "test_list_products",
    "test_product_detail",
    "test_add_to_cart",
    "test_remove_from_cart",
    "test_cart_total",
    "test_api_version_header",
    "test_checkout_applies_discount",
    "test_order_confirmation_email",
]
FAILING_TESTS = TEST_NAMES[-2:]


class Build:
    """One build: its API document plus what the emulation needs to move it on."""

    def __init__(self, doc: dict, region: str, project: dict, spec: dict, env: dict, fault: dict | None):
        self.doc = doc
        self.region = region
        self.project = project
        self.spec = spec
        self.env = env
        self.mode = fault["mode"] if fault else None
        self.seconds = fault["seconds"] if self.mode == "slow" else None  # else the emulator's build_seconds
        # A hung build times out after its project's timeoutInMinutes, or sooner where the fault says so.
        self.timeout_seconds = (fault.get("timeout_seconds") if self.mode == "hang" else None) or (
            doc["timeoutInMinutes"] * 60
        )
        self.uuid = doc["id"].split(":", 1)[1]
        self.started = doc["startTime"]
        self.phase_index = 0
        self.phase_started = doc["startTime"]
        self.failed_command = failing_command(spec, self.mode)
        self.exit_status = 1
        self.failed = False
        self.done = False
        self.source_files: dict[str, bytes] | None = None  # a zip source's files (S3 sources)
        self.secondary_files: dict[str, dict[str, bytes]] = {}  # secondary S3 sources' files, by identifier
        self.packaging = "NONE"  # of the output artifact
        self.secondary_packaging: dict[str, str] = {}  # of each secondary artifact, by identifier

    @property
    def name(self) -> str:
        return self.doc["projectName"]


class CodeBuildEmulator:
    def __init__(self, faults: Faults, build_seconds: float):
        self.faults = faults
        self.build_seconds = build_seconds
        self.reset()

    def reset(self) -> None:
        self.builds: dict[str, Build] = {}
        self.numbers: dict[tuple[str, str], int] = {}
        self.tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self.reports: dict[str, tuple[dict, list[dict]]] = {}  # report arn -> (report, test cases)

    # ---- API ---------------------------------------------------------------

    def handle(self, operation: str, params: dict, region: str, caller: str) -> dict:
        if self.faults.should_throttle("codebuild", self._projects_concerned(operation, params)):
            raise throttled()
        if operation == "StartBuild":
            return self.start_build(params, region, caller)
        if operation == "BatchGetBuilds":
            return self.batch_get_builds(params, region)
        if operation == "StopBuild":
            return self.stop_build(params, region)
        if operation == "ListBuildsForProject":
            return self.list_builds_for_project(params, region)
        if operation == "BatchGetReports":
            return self.batch_get_reports(params)
        if operation == "DescribeTestCases":
            return self.describe_test_cases(params)
        return self.list_builds(params, region)

    def throttle_check(self, operation: str, params: dict) -> None:
        """For calls moto answers (BatchGetProjects): throttled projects still refuse some."""
        names = [n.split("/")[-1] for n in params.get("names") or []] if operation == "BatchGetProjects" else []
        if self.faults.should_throttle("codebuild", names):
            raise throttled()

    def _projects_concerned(self, operation: str, params: dict) -> list[str]:
        if operation in ("StartBuild", "ListBuildsForProject"):
            return [str(params.get("projectName", "")).split("/")[-1]]
        if operation == "BatchGetBuilds":
            return [str(i).split("/")[-1].split(":")[0] for i in params.get("ids") or []]
        if operation == "StopBuild":
            return [str(params.get("id", "")).split("/")[-1].split(":")[0]]
        return []

    def start_build(self, params: dict, region: str, caller: str) -> dict:
        name = str(params.get("projectName") or "").split("/")[-1]
        if not name:
            raise ApiError("InvalidInputException", "Project name is required")
        project = self._project(region, name)
        token = params.get("idempotencyToken")
        at = now()
        if token:
            earlier = self.tokens.get((region, name, token))
            if earlier and at - earlier[1] < IDEMPOTENCY_WINDOW and earlier[0] in self.builds:
                return {"build": self.builds[earlier[0]].doc}

        number = self.numbers.get((region, name), 0) + 1
        self.numbers[(region, name)] = number
        build_uuid = str(uuid.uuid4())
        build_id = f"{name}:{build_uuid}"
        arn = f"arn:aws:codebuild:{region}:{ACCOUNT_ID}:build/{build_id}"

        source = copy.deepcopy(project.get("source") or {})
        if params.get("sourceTypeOverride"):
            source["type"] = params["sourceTypeOverride"]
        if params.get("sourceLocationOverride"):
            source["location"] = params["sourceLocationOverride"]
        if params.get("buildspecOverride"):
            source["buildspec"] = params["buildspecOverride"]
        source_version = params.get("sourceVersion") or project.get("sourceVersion")
        files, s3_version = None, None
        if source.get("type") == "S3":
            files, s3_version = read_s3_source(source.get("location", ""))
        # An inline buildspec, else the named file (buildspec.yml) in a zip source, as CodeBuild reads it.
        spec = parse_buildspec(source.get("buildspec")) or parse_buildspec(
            (files or {}).get(source.get("buildspec") or "buildspec.yml", b"").decode(errors="replace")
        )
        resolved = s3_version or resolve_source_version(source_version)
        secondary_sources, secondary_files = [], {}
        for extra in params.get("secondarySourcesOverride") or []:
            identifier = extra.get("sourceIdentifier", "")
            if extra.get("type") == "S3":
                secondary_files[identifier] = read_s3_source(extra.get("location", ""))[0]
            secondary_sources.append(copy.deepcopy(extra))

        environment = copy.deepcopy(project.get("environment") or {})
        for key, field in (
            ("imageOverride", "image"),
            ("computeTypeOverride", "computeType"),
            ("environmentTypeOverride", "type"),
            ("privilegedModeOverride", "privilegedMode"),
        ):
            if key in params:
                environment[field] = params[key]
        variables = {
            v["name"]: {"name": v["name"], "value": v.get("value", ""), "type": v.get("type", "PLAINTEXT")}
            for v in environment.get("environmentVariables") or []
        }
        for v in params.get("environmentVariablesOverride") or []:
            variables[v["name"]] = {"name": v["name"], "value": v.get("value", ""), "type": v.get("type", "PLAINTEXT")}
        environment["environmentVariables"] = list(variables.values())

        artifacts = copy.deepcopy(
            params.get("artifactsOverride") or project.get("artifacts") or {"type": "NO_ARTIFACTS"}
        )
        group = f"/aws/codebuild/{name}"
        doc = {
            "id": build_id,
            "arn": arn,
            "buildNumber": number,
            "startTime": ts(at),
            "currentPhase": "QUEUED",
            "buildStatus": "IN_PROGRESS",
            "resolvedSourceVersion": resolved,
            "projectName": name,
            "phases": [
                {
                    "phaseType": "SUBMITTED",
                    "phaseStatus": "SUCCEEDED",
                    "startTime": ts(at),
                    "endTime": ts(at),
                    "durationInSeconds": 0,
                },
                {"phaseType": "QUEUED", "startTime": ts(at)},
            ],
            "source": source,
            "secondarySources": secondary_sources,
            "secondarySourceVersions": [],
            "artifacts": artifact_location(artifacts, name, build_uuid),
            "secondaryArtifacts": [
                {**artifact_location(extra, name, build_uuid), "artifactIdentifier": extra.get("artifactIdentifier")}
                for extra in params.get("secondaryArtifactsOverride") or []
            ],
            "cache": project.get("cache") or {"type": "NO_CACHE"},
            "environment": environment,
            "serviceRole": params.get("serviceRoleOverride") or project.get("serviceRole"),
            "logs": {
                "groupName": group,
                "streamName": build_uuid,
                "deepLink": (
                    f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups"
                    f"/log-group/{group.replace('/', '$252F')}/log-events/{build_uuid}"
                ),
                "cloudWatchLogsArn": f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{group}:log-stream:{build_uuid}",
                "cloudWatchLogs": {"status": "ENABLED"},
                "s3Logs": {"status": "DISABLED", "encryptionDisabled": False},
            },
            "timeoutInMinutes": params.get("timeoutInMinutesOverride") or project.get("timeoutInMinutes") or 60,
            "queuedTimeoutInMinutes": (
                params.get("queuedTimeoutInMinutesOverride") or project.get("queuedTimeoutInMinutes") or 480
            ),
            "buildComplete": False,
            "initiator": caller,
            "encryptionKey": params.get("encryptionKeyOverride")
            or project.get("encryptionKey")
            or f"arn:aws:kms:{region}:{ACCOUNT_ID}:alias/aws/s3",
            "exportedEnvironmentVariables": [],
            "reportArns": [],
        }
        if source_version:
            doc["sourceVersion"] = source_version

        env = {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCOUNT_ID": ACCOUNT_ID,
            "CODEBUILD_BUILD_ID": build_id,
            "CODEBUILD_BUILD_ARN": arn,
            "CODEBUILD_BUILD_NUMBER": str(number),
            "CODEBUILD_BUILD_IMAGE": str(environment.get("image", "")),
            "CODEBUILD_INITIATOR": caller,
            "CODEBUILD_LOG_PATH": build_uuid,
            "CODEBUILD_RESOLVED_SOURCE_VERSION": resolved,
            "CODEBUILD_SOURCE_REPO_URL": str(source.get("location", "")),
            "CODEBUILD_SOURCE_VERSION": source_version or "",
            "CODEBUILD_SRC_DIR": f"/codebuild/output/src{number}/src",
            "CODEBUILD_START_TIME": str(int(at * 1000)),
        }
        # Precedence as in CodeBuild: buildspec env < project env < StartBuild override.
        spec_env = spec.get("env") or {}
        env.update({k: str(v) for k, v in (spec_env.get("variables") or {}).items()})
        env.update({k: self._parameter(region, v) for k, v in (spec_env.get("parameter-store") or {}).items()})
        for v in variables.values():
            env[v["name"]] = self._parameter(region, v["value"]) if v["type"] == "PARAMETER_STORE" else v["value"]

        if doc["serviceRole"] is None:
            doc.pop("serviceRole")
        build = Build(doc, region, project, spec, env, self.faults.for_project(name))
        build.source_files = files
        build.secondary_files = secondary_files
        build.packaging = artifacts.get("packaging") or "NONE"
        build.secondary_packaging = {
            extra.get("artifactIdentifier"): extra.get("packaging") or "NONE"
            for extra in params.get("secondaryArtifactsOverride") or []
        }
        self.builds[build_id] = build
        if token:
            self.tokens[(region, name, token)] = (build_id, at)
        return {"build": doc}

    def batch_get_builds(self, params: dict, region: str) -> dict:
        ids = params.get("ids")
        if not ids:
            raise ApiError("InvalidInputException", "Build ids are required")
        if len(ids) > 100:
            raise ApiError(
                "InvalidInputException",
                "1 validation error detected: Value at 'ids' failed to satisfy "
                "constraint: Member must have length less than or equal to 100",
            )
        self.tick(now())
        found, missing = [], []
        for build_id in ids:
            build = self._find(build_id, region)
            if build:
                found.append(build.doc)
            else:
                missing.append(build_id)
        return {"builds": found, "buildsNotFound": missing}

    def stop_build(self, params: dict, region: str) -> dict:
        build_id = str(params.get("id") or "")
        if ":" not in build_id:
            raise ApiError("InvalidInputException", "Invalid build ID provided")
        build = self._find(build_id, region)
        if not build:
            raise ApiError("ResourceNotFoundException", f"Build {build_id} does not exist")
        at = now()
        self._advance(build, at)
        if not build.done:
            self._close_phase(build, at, "STOPPED")
            self._log(build, at, ["Build was stopped by a StopBuild request"])
            self._complete(build, at, "STOPPED")
        return {"build": build.doc}

    def list_builds_for_project(self, params: dict, region: str) -> dict:
        name = str(params.get("projectName") or "").split("/")[-1]
        if not name:
            raise ApiError("InvalidInputException", "Project name is required")
        if name not in backend("codebuild", region).codebuild_projects:
            raise ApiError(
                "ResourceNotFoundException",
                f"The provided project arn:aws:codebuild:{region}:{ACCOUNT_ID}:project/{name} does not exist",
            )
        return self._page([b for b in self.builds.values() if b.region == region and b.name == name], params)

    def list_builds(self, params: dict, region: str) -> dict:
        return self._page([b for b in self.builds.values() if b.region == region], params)

    def batch_get_reports(self, params: dict) -> dict:
        arns = params.get("reportArns") or []
        return {
            "reports": [self.reports[a][0] for a in arns if a in self.reports],
            "reportsNotFound": [a for a in arns if a not in self.reports],
        }

    def describe_test_cases(self, params: dict) -> dict:
        arn = params.get("reportArn") or ""
        if arn not in self.reports:
            raise ApiError("ResourceNotFoundException", f"Report {arn} does not exist")
        wanted = (params.get("filter") or {}).get("status")
        cases = [c for c in self.reports[arn][1] if not wanted or c["status"] == wanted]
        start, size = int(params.get("nextToken") or 0), int(params.get("maxResults") or 50)
        result = {"testCases": cases[start : start + size]}
        if start + size < len(cases):
            result["nextToken"] = str(start + size)
        return result

    def _page(self, builds: list[Build], params: dict) -> dict:
        # Newest first unless ASCENDING, 100 per page, like CodeBuild.
        builds.sort(key=lambda b: b.started, reverse=params.get("sortOrder", "DESCENDING") != "ASCENDING")
        start = int(params.get("nextToken") or 0)
        result = {"ids": [b.doc["id"] for b in builds[start : start + 100]]}
        if start + 100 < len(builds):
            result["nextToken"] = str(start + 100)
        return result

    def _project(self, region: str, name: str) -> dict:
        project = backend("codebuild", region).codebuild_projects.get(name)
        if project is None:
            raise ApiError(
                "ResourceNotFoundException",
                f"Project cannot be found: arn:aws:codebuild:{region}:{ACCOUNT_ID}:project/{name}",
            )
        return project.project_metadata

    def _find(self, build_id: str, region: str) -> Build | None:
        build_id = build_id.split(":build/")[-1]  # accept ARNs too
        build = self.builds.get(build_id)
        return build if build and build.region == region else None

    def _parameter(self, region: str, name: str) -> str:
        try:
            parameter = backend("ssm", region).get_parameter(name)
            return parameter.value if parameter else ""
        except Exception:
            return ""

    # ---- lifecycle ---------------------------------------------------------

    def tick(self, at: float) -> None:
        for build in list(self.builds.values()):
            if not build.done:
                try:
                    self._advance(build, at)
                except Exception:  # one broken build must not stop the others
                    log.exception("advancing build %s", build.doc["id"])

    def _advance(self, build: Build, at: float) -> None:
        while not build.done:
            phase, share = PHASES[build.phase_index]
            if phase == "BUILD" and build.mode == "hang":
                deadline = build.started + build.timeout_seconds
                if at >= deadline:
                    self._close_phase(build, deadline, "TIMED_OUT", "BUILD_TIMED_OUT", "Build has timed out. ")
                    self._complete(build, deadline, "TIMED_OUT")
                return
            end = build.phase_started + share * (build.seconds or self.build_seconds)
            if end > at:
                return
            self._finish_phase(build, phase, end)

    def _finish_phase(self, build: Build, phase: str, at: float) -> None:
        if phase in SPEC_PHASES:
            ok = self._run_phase(build, phase, at)
        else:
            self._log(build, at, phase_lines(build, phase))
            ok = True
        if phase == "UPLOAD_ARTIFACTS":
            self._upload_artifacts(build, at)
        if phase == "FINALIZING":
            self._upload_reports(build, at)
        if ok:
            self._close_phase(build, at, "SUCCEEDED")
        else:
            message = f"Error while executing command: {build.failed_command}. Reason: exit status {build.exit_status}"
            self._close_phase(build, at, "FAILED", "COMMAND_EXECUTION_ERROR", message)
            build.failed = True
        if phase == "FINALIZING":
            self._complete(build, at, "FAILED" if build.failed else "SUCCEEDED")
            return
        # A failed phase skips the rest of the buildspec, straight to FINALIZING.
        build.phase_index = PHASE_NAMES.index("FINALIZING") if build.failed else build.phase_index + 1
        build.phase_started = at
        next_phase = PHASE_NAMES[build.phase_index]
        build.doc["currentPhase"] = next_phase
        build.doc["phases"].append({"phaseType": next_phase, "startTime": ts(at)})

    def _close_phase(self, build: Build, at: float, status: str, code: str = "", message: str = "") -> None:
        record = build.doc["phases"][-1]
        record.update(
            {
                "phaseStatus": status,
                "endTime": ts(at),
                "durationInSeconds": int(round(at - record["startTime"])),
                "contexts": [{"statusCode": code, "message": message}],
            }
        )

    def _complete(self, build: Build, at: float, status: str) -> None:
        build.done = True
        names = (build.spec.get("env") or {}).get("exported-variables") or []
        build.doc.update(
            {
                "buildStatus": status,
                "currentPhase": "COMPLETED",
                "endTime": ts(at),
                "buildComplete": True,
                "exportedEnvironmentVariables": [{"name": n, "value": build.env.get(n, "")} for n in names],
            }
        )
        build.doc["phases"].append({"phaseType": "COMPLETED", "startTime": ts(at)})

    def _run_phase(self, build: Build, phase: str, at: float) -> bool:
        """Play the buildspec phase's commands; False when the injected failure hits."""
        commands = phase_commands(build.spec, SPEC_PHASES[phase])
        fails = phase == "BUILD" and build.mode in ("fail", "fail-tests")
        clock = log_clock(at)
        lines = [f"[Container] {log_clock(build.phase_started)} Entering phase {phase}"]
        for command in commands or ([build.failed_command] if fails else []):
            lines.append(f"[Container] {clock} Running command {command}")
            injected = fails and command == build.failed_command
            status = 1 if injected else exit_status(command)
            if status:
                build.failed_command, build.exit_status = command, status
                lines += failure_output(build) if injected else []
                lines += [
                    f"[Container] {clock} Command did not exit successfully {command} exit status {status}",
                    f"[Container] {clock} Phase complete: {phase} State: FAILED",
                    f"[Container] {clock} Phase context status code: COMMAND_EXECUTION_ERROR Message: "
                    f"Error while executing command: {command}. Reason: exit status {status}",
                ]
                self._log(build, at, lines)
                return False
            lines += run_command(command, build.env)
        lines += [
            f"[Container] {clock} Phase complete: {phase} State: SUCCEEDED",
            f"[Container] {clock} Phase context status code:  Message: ",
        ]
        self._log(build, at, lines)
        return True

    # ---- effects in other services ----------------------------------------

    def _log(self, build: Build, at: float, lines: list[str]) -> None:
        try:
            logs = backend("logs", build.region)
            group, stream = build.doc["logs"]["groupName"], build.uuid
            if group not in logs.groups:
                logs.create_log_group(group, {})
            if stream not in logs.groups[group].streams:
                logs.create_log_stream(group, stream)
            stamp = int(at * 1000)
            logs.put_log_events(group, stream, [{"timestamp": stamp, "message": line} for line in lines])
        except Exception:
            log.exception("writing logs for %s", build.doc["id"])

    def _upload_artifacts(self, build: Build, at: float) -> None:
        self._upload_artifact(build, at, build.doc["artifacts"], build.packaging, None)
        for extra in build.doc["secondaryArtifacts"]:
            identifier = extra.get("artifactIdentifier")
            self._upload_artifact(build, at, extra, build.secondary_packaging.get(identifier, "NONE"), identifier)

    def _upload_artifact(
        self, build: Build, at: float, artifacts: dict, packaging: str, identifier: str | None
    ) -> None:
        location = artifacts.get("location", "")
        if not location.startswith("arn:aws:s3:::"):
            return
        bucket, _, key = location[len("arn:aws:s3:::") :].partition("/")
        manifest = json.dumps(
            {
                "buildId": build.doc["id"],
                "buildNumber": build.doc["buildNumber"],
                "resolvedSourceVersion": build.doc["resolvedSourceVersion"],
                "exportedVariables": {
                    k: build.env.get(k, "") for k in (build.spec.get("env") or {}).get("exported-variables") or []
                },
            },
            indent=2,
        ).encode()
        outputs = {**artifact_files(build, identifier), "build-info.json": manifest}
        if packaging == "ZIP":
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                for path, content in sorted(outputs.items()):
                    archive.writestr(path, content)
            self._put_object(build, at, bucket, key, buffer.getvalue())
        else:
            for path, content in outputs.items():
                self._put_object(build, at, bucket, f"{key}/{path}", content)

    def _upload_reports(self, build: Build, at: float) -> None:
        reports = build.spec.get("reports") or {}
        if not isinstance(reports, dict):
            return
        bucket = artifact_bucket(build.project)
        for group_name, config in reports.items():
            files = (config or {}).get("files") or []
            plain = [f for f in files if "*" not in f]
            file_name = plain[0].rsplit("/", 1)[-1] if plain else f"{group_name}.xml"
            arn = f"arn:aws:codebuild:{build.region}:{ACCOUNT_ID}:report/{build.name}-{group_name}:{build.uuid}"
            build.doc["reportArns"].append(arn)
            self.reports[arn] = test_report(build, arn, group_name, at)
            if bucket:
                xml = junit_report(group_name, failing=build.mode == "fail-tests")
                self._put_object(build, at, bucket, f"{build.name}/{build.uuid}/{file_name}", xml)

    def _put_object(self, build: Build, at: float, bucket: str, key: str, body: bytes) -> None:
        try:
            backend_s3 = backend("s3", "aws")
            backend_s3.put_object(bucket, key, body)
        except Exception as error:
            self._log(build, at, [f"[Container] {log_clock(at)} Failed to upload s3://{bucket}/{key}: {error}"])


# ---- sources and artifacts ---------------------------------------------------


def read_s3_source(location: str) -> tuple[dict[str, bytes], str | None]:
    """The files of a zip source at bucket/key in moto's S3, and the object's version id.

    A missing object fails StartBuild as CodeBuild fails the build's DOWNLOAD_SOURCE phase."""
    bucket, _, key = location.partition("/")
    try:
        obj = backend("s3", "aws").get_object(bucket, key)
    except Exception as error:
        raise ApiError("InvalidInputException", f"source s3://{bucket}/{key} cannot be read: {error}") from None
    if obj is None:
        raise ApiError("InvalidInputException", f"source s3://{bucket}/{key} does not exist")
    try:
        with zipfile.ZipFile(io.BytesIO(obj.value)) as archive:
            files = {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
    except zipfile.BadZipFile:
        files = {key.rsplit("/", 1)[-1]: obj.value}
    version = obj.version_id if obj.version_id not in (None, "null") else None
    return files, version or hashlib.sha1(obj.value).hexdigest()


def artifact_files(build: Build, identifier: str | None = None) -> dict[str, bytes]:
    """What the buildspec's artifacts.files (of secondary-artifacts.<identifier> for a secondary artifact) select
    from the sources (secondary sources' files under their identifier), plus the files its commands would write
    that the emulation knows (imageDetail.json from IMAGE_URI)."""
    section = build.spec.get("artifacts") or {}
    if identifier is not None:
        section = (section.get("secondary-artifacts") or {}).get(identifier) or {}
    patterns = section.get("files") or ["**/*"]
    sources = dict(build.source_files or {})
    for source_id, files in build.secondary_files.items():
        sources.update({f"{source_id}/{path}": content for path, content in files.items()})
    files = {
        path: content for path, content in sources.items() if any(_glob_match(path, pattern) for pattern in patterns)
    }
    if "imageDetail.json" in patterns and build.env.get("IMAGE_URI"):
        files["imageDetail.json"] = json.dumps({"ImageURI": build.env["IMAGE_URI"]}).encode()
    return files


def _glob_match(path: str, pattern: str) -> bool:
    """CodeBuild's artifact globs: '**/*' any depth, '*' one level."""
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    return re.fullmatch(regex, path) is not None


# ---- buildspec emulation ---------------------------------------------------


def parse_buildspec(text) -> dict:
    """Inline buildspec as a dict; a file name (buildspec in the source) gives {}."""
    if not text or not isinstance(text, str):
        return {}
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return spec if isinstance(spec, dict) and ("phases" in spec or "version" in spec) else {}


def phase_commands(spec: dict, phase: str) -> list[str]:
    commands = ((spec.get("phases") or {}).get(phase) or {}).get("commands") or []
    lines = []
    for command in commands:
        lines += [line.strip() for line in str(command).splitlines() if line.strip()]
    return lines


def failing_command(spec: dict, mode: str | None) -> str:
    commands = phase_commands(spec, "build")
    if mode == "fail-tests":
        tests = [c for c in commands if "test" in c]
        return tests[0] if tests else (commands[-1] if commands else "pytest")
    return commands[-1] if commands else "./build.sh"


def expand(text: str, env: dict) -> str:
    """$VAR, ${VAR} and ${VAR:offset:length}; unset variables expand to ""."""

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(4)
        result = env.get(name, "")
        if match.group(2) is not None:
            start = int(match.group(2))
            result = result[start : start + int(match.group(3))] if match.group(3) is not None else result[start:]
        return result

    return VARIABLE.sub(value, text)


def exit_status(command: str) -> int:
    """The exit status of a command line: `exit N` and `false` (alone or in a && chain) fail, all else succeeds."""
    for part in command.split("&&"):
        part = part.strip()
        if part == "false":
            return 1
        if match := re.fullmatch(r"exit\s+(\d+)", part):
            return int(match.group(1)) % 256
    return 0


def run_command(command: str, env: dict) -> list[str]:
    """Apply the assignments in a command line to env; return what it "prints"."""
    for part in command.split("&&"):
        match = ASSIGNMENT.match(part.strip())
        if not match:
            continue
        name, raw = match.group(1), match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            env[name] = raw[1:-1]
        elif len(raw) >= 2 and raw[0] == raw[-1] == '"':
            env[name] = expand(raw[1:-1], env)
        else:
            env[name] = expand(raw, env)
    if re.search(r"\bpytest\b|\btest\b", command):
        return [f"============ {len(TEST_NAMES)} passed in 3.87s ============"]
    return []


def failure_output(build: Build) -> list[str]:
    if build.mode == "fail-tests":
        lines = [f"FAILED tests/integration/test_webapp.py::{name} - AssertionError" for name in FAILING_TESTS]
        passed = len(TEST_NAMES) - len(FAILING_TESTS)
        return lines + [f"======= {len(FAILING_TESTS)} failed, {passed} passed in 4.12s ======="]
    return ["sandbox: injected failure (fault mode 'fail')"]


def phase_lines(build: Build, phase: str) -> list[str]:
    clock = log_clock(build.phase_started)
    prefix = f"[Container] {clock} "
    if phase == "PROVISIONING":
        return [
            prefix + "Running on CodeBuild On-demand",
            prefix + "Waiting for agent ping",
            prefix + "Waiting for DOWNLOAD_SOURCE",
        ]
    if phase == "DOWNLOAD_SOURCE":
        found = [p for p in SPEC_PHASES.values() if phase_commands(build.spec, p)]
        return [
            prefix + "Phase is DOWNLOAD_SOURCE",
            prefix + f"CODEBUILD_SRC_DIR={build.env['CODEBUILD_SRC_DIR']}",
            prefix + "YAML location is /codebuild/readonly/buildspec.yml",
            prefix + "Processing environment variables",
            prefix + f"Moving to directory {build.env['CODEBUILD_SRC_DIR']}",
            prefix + f"Phases found in YAML: {len(found)}",
        ]
    if phase == "UPLOAD_ARTIFACTS":
        return [
            prefix + "Expanding base directory path: .",
            prefix + "Assembling file list",
            prefix + "Phase complete: UPLOAD_ARTIFACTS State: SUCCEEDED",
            prefix + "Phase context status code:  Message: ",
        ]
    return []


def resolve_source_version(source_version: str | None) -> str:
    """A commit sha stays; a branch or tag resolves to a stable made-up sha."""
    version = source_version or "refs/heads/main"
    if COMMIT_SHA.match(version):
        return version
    return hashlib.sha1(version.encode()).hexdigest()


def artifact_location(artifacts: dict, project: str, build_uuid: str) -> dict:
    """The Build's artifacts block; S3 keys follow path/[build id]/name."""
    if artifacts.get("type") != "S3" or not artifacts.get("location"):
        return {"location": ""}
    parts = [
        artifacts.get("path"),
        build_uuid if artifacts.get("namespaceType") == "BUILD_ID" else None,
        artifacts.get("name") or project,
    ]
    key = "/".join(p.strip("/") for p in parts if p)
    return {
        "location": f"arn:aws:s3:::{artifacts['location']}/{key}",
        "encryptionDisabled": bool(artifacts.get("encryptionDisabled", False)),
    }


def artifact_bucket(project: dict) -> str | None:
    artifacts = project.get("artifacts") or {}
    return artifacts.get("location") if artifacts.get("type") == "S3" else None


def test_report(build: Build, arn: str, group_name: str, at: float) -> tuple[dict, list[dict]]:
    """The report group view of the same results as the JUnit file."""
    failed = set(FAILING_TESTS) if build.mode == "fail-tests" else set()
    expires = ts(at + 30 * 86400)
    cases = [
        {
            "reportArn": arn,
            "testRawDataPath": f"{build.env['CODEBUILD_SRC_DIR']}/reports/junit.xml",
            "prefix": "tests.integration.test_webapp",
            "name": name,
            "status": "FAILED" if name in failed else "SUCCEEDED",
            "durationInNanoSeconds": 300_000_000,
            "message": "AssertionError: expected 200, got 500" if name in failed else "",
            "expired": expires,
            "testSuiteName": group_name,
        }
        for name in TEST_NAMES
    ]
    counts = {"SUCCEEDED": len(TEST_NAMES) - len(failed)}
    if failed:
        counts["FAILED"] = len(failed)
    report = {
        "arn": arn,
        "type": "TEST",
        "name": f"{build.name}-{group_name}",
        "reportGroupArn": f"arn:aws:codebuild:{build.region}:{ACCOUNT_ID}:report-group/{build.name}-{group_name}",
        "executionId": build.doc["arn"],
        "status": "FAILED" if failed else "SUCCEEDED",
        "created": ts(at),
        "expired": expires,
        "exportConfig": {"exportConfigType": "NO_EXPORT"},
        "truncated": False,
        "testSummary": {
            "total": len(TEST_NAMES),
            "statusCounts": counts,
            "durationInNanoSeconds": 300_000_000 * len(TEST_NAMES),
        },
    }
    return report, cases


def junit_report(suite: str, failing: bool) -> bytes:
    failed = set(FAILING_TESTS) if failing else set()
    cases = []
    for name in TEST_NAMES:
        body = ""
        if name in failed:
            body = (
                f'<failure message="AssertionError: expected 200, got 500" type="AssertionError">'
                f"tests/integration/test_webapp.py:{40 + TEST_NAMES.index(name)}: AssertionError</failure>"
            )
        cases.append(
            f'    <testcase classname="tests.integration.test_webapp" name="{name}" time="0.3">{body}</testcase>'
        )
    header = (
        f'<testsuite name="{suite}" tests="{len(TEST_NAMES)}" failures="{len(failed)}" '
        f'errors="0" skipped="0" time="3.9">'
    )
    return "\n".join(
        [
            '<?xml version="1.0" encoding="utf-8"?>',
            "<testsuites>",
            "  " + header,
            *cases,
            "  </testsuite>",
            "</testsuites>",
            "",
        ]
    ).encode()
