"""CodeBuild actions: ``build.codebuild`` and ``test.codebuild``.

Both start a build, wait for it deferred (the triggerer's shared batched poller), and return the
action's output variables. See docs/operators.md for the reattach and stop rules.
"""

from __future__ import annotations

import fnmatch
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, mask_secret

from release_orchestrator.hooks.codebuild import (
    BUILD_STOPPED,
    BUILD_SUCCEEDED,
    BUILD_TERMINAL_STATES,
    CodeBuildHook,
)
from release_orchestrator.links import CodeBuildBuildLink, CodeBuildLogsLink
from release_orchestrator.operators.reattach import (
    StartRecord,
    StopsItsWork,
    defer_timeout,
    looks_secret,
    stable_token,
)
from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

ENV_TYPES = ("PLAINTEXT", "PARAMETER_STORE", "SECRETS_MANAGER")
LOG_TAIL_LINES = 30
# Long enough never to end a wait before the build or execution_timeout does.
SYNC_WAIT_MAX_ATTEMPTS = 1_000_000


# --- build.codebuild ---------------------------------------------------------------------------


def normalize_environment_variables(value: Any) -> list[dict[str, str]]:
    """StartBuild's environmentVariablesOverride from a list of {name, value, type} or a name->value map."""
    if not value:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, Mapping):
        return [{"name": str(k), "value": str(v), "type": "PLAINTEXT"} for k, v in value.items()]
    result = []
    for var in value:
        var = {k.lower(): v for k, v in var.items()}
        var_type = str(var.get("type") or "PLAINTEXT").upper()
        if var_type not in ENV_TYPES:
            raise ValueError(f"Environment variable {var.get('name')!r}: type must be one of {ENV_TYPES}")
        result.append({"name": str(var["name"]), "value": str(var.get("value", "")), "type": var_type})
    return result


def failed_phase(build: dict[str, Any]) -> tuple[str, str]:
    """The first phase that did not succeed, and its context message."""
    for phase in build.get("phases", []):
        if phase.get("phaseStatus") not in (None, "SUCCEEDED"):
            contexts = phase.get("contexts") or []
            message = "; ".join(
                ": ".join(filter(None, (c.get("statusCode"), c.get("message")))) for c in contexts
            )
            return phase.get("phaseType", "UNKNOWN"), message
    return build.get("currentPhase", "UNKNOWN"), ""


class CodeBuildOperator(StopsItsWork, AwsBaseOperator[CodeBuildHook]):
    """Run a CodeBuild build (action type ``build.codebuild``).

    Starts the build and waits for it deferred; succeeds only when the build SUCCEEDED.

    :param project_name: the CodeBuild project.
    :param source_version: commit, branch, tag or S3 object version to build.
    :param environment_variables: overrides, as a list of ``{name, value, type}`` (type PLAINTEXT,
        PARAMETER_STORE or SECRETS_MANAGER) or a mapping name -> value (PLAINTEXT).
    :param buildspec: buildspec override (inline YAML or a path in the source).
    :param build_timeout_minutes: build timeout override.
    :param primary_source: S3 URI of the source bundle (``s3://bucket/key.zip``), or a mapping
        ``{type, location}``; anything else names an input artifact and changes nothing.
    :param namespace: the action's variable namespace (only logged).
    :param poll_interval: seconds between two looks at the build.
    :param deferrable: wait in the triggerer (default) instead of a worker slot.
    """

    aws_hook_class = CodeBuildHook
    template_fields: Sequence[str] = aws_template_fields(
        "project_name",
        "source_version",
        "environment_variables",
        "buildspec",
        "build_timeout_minutes",
        "primary_source",
        "namespace",
    )
    template_fields_renderers = {"environment_variables": "json", "buildspec": "yaml"}
    ui_color = "#e7f0d5"
    operator_extra_links = (CodeBuildLogsLink(), CodeBuildBuildLink())

    # Key of this action's StartRecord in the task state store.
    record_key = "codebuild_build"

    def __init__(
        self,
        *,
        project_name: str,
        source_version: str | None = None,
        environment_variables: list[dict[str, str]] | dict[str, str] | str | None = None,
        buildspec: str | None = None,
        build_timeout_minutes: int | str | None = None,
        primary_source: str | dict[str, str] | None = None,
        namespace: str | None = None,
        poll_interval: float = 30,
        deferrable: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.project_name = project_name
        self.source_version = source_version
        self.environment_variables = environment_variables
        self.buildspec = buildspec
        self.build_timeout_minutes = build_timeout_minutes
        self.primary_source = primary_source
        self.namespace = namespace
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._build_id: str | None = None

    # --- the request ---

    @cached_property
    def env_overrides(self) -> list[dict[str, str]]:
        return normalize_environment_variables(self.environment_variables)

    def mask_secrets(self) -> None:
        """Register secret values with the masker (again in each process: masks are per process)."""
        for var in self.env_overrides:
            if var["value"] and (var["type"] != "PLAINTEXT" or looks_secret(var["name"])):
                mask_secret(var["value"])

    def start_overrides(self, context: Context, generation: int) -> dict[str, Any]:
        overrides: dict[str, Any] = {
            # Same token for the same task instance and generation: a try that crashed between
            # StartBuild and recording the build gets the same build back (AWS keeps it 5 minutes).
            "idempotencyToken": stable_token(context, "codebuild", generation),
        }
        if self.source_version:
            overrides["sourceVersion"] = str(self.source_version)
        if self.env_overrides:
            overrides["environmentVariablesOverride"] = self.env_overrides
        if self.buildspec:
            overrides["buildspecOverride"] = self.buildspec
        if self.build_timeout_minutes not in (None, ""):
            overrides["timeoutInMinutesOverride"] = int(self.build_timeout_minutes)
        overrides.update(self._source_override())
        return overrides

    def _source_override(self) -> dict[str, str]:
        source = self.primary_source
        if isinstance(source, str) and source.startswith("s3://"):
            return {"sourceTypeOverride": "S3", "sourceLocationOverride": source[len("s3://") :]}
        if isinstance(source, Mapping):
            override = {}
            if source.get("type"):
                override["sourceTypeOverride"] = source["type"]
            if source.get("location"):
                override["sourceLocationOverride"] = source["location"]
            return override
        if source:
            # An input artifact's name: the project's own source configuration applies.
            self.log.info("Primary source: input artifact %s", source)
        return {}

    def describe_request(self, overrides: dict[str, Any]) -> str:
        """The request for the log: variable names and types, never their values."""
        shown = {k: v for k, v in overrides.items() if k not in ("environmentVariablesOverride", "buildspecOverride")}
        if self.env_overrides:
            shown["environmentVariables"] = [f"{v['name']} ({v['type']})" for v in self.env_overrides]
        if "buildspecOverride" in overrides:
            shown["buildspecOverride"] = "<inline>" if "\n" in self.buildspec else self.buildspec
        return json.dumps(shown)

    # --- execution ---

    def execute(self, context: Context) -> dict[str, Any]:
        self.mask_secrets()
        record = StartRecord(context, self.record_key, self.log)
        build = self._reattach(record) or self._start(context, record)
        self._build_id = build["id"]
        self._persist_links(context, build)
        if build["buildStatus"] in BUILD_TERMINAL_STATES:
            return self.finish(context, build)
        if self.deferrable:
            self.defer(
                trigger=CodeBuildBuildTrigger(
                    build_id=build["id"],
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    poll_interval=self.poll_interval,
                    verify=self.verify,
                    botocore_config=self.botocore_config,
                ),
                method_name="execute_complete",
                timeout=defer_timeout(self, context),
            )
        self.log.info("Waiting for build %s", build["id"])
        self.hook.get_waiter("build_complete").wait(
            ids=[build["id"]],
            WaiterConfig={"Delay": int(float(self.poll_interval)), "MaxAttempts": SYNC_WAIT_MAX_ATTEMPTS},
        )
        return self.finish(context, self.hook.get_build(build["id"]))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        self.mask_secrets()
        if not event:
            raise AirflowException("Trigger error: event is None")
        self._build_id = event.get("build_id")
        if event.get("status") == "error":
            raise AirflowException(event.get("message", f"Waiting for build {self._build_id} failed"))
        return self.finish(context, self.hook.get_build(event["build_id"]))

    def _reattach(self, record: StartRecord) -> dict[str, Any] | None:
        build_id = record.pending_id
        if not build_id:
            return None
        try:
            build = self.hook.get_build(build_id)
        except Exception as err:
            self.log.warning("Recorded build %s cannot be read (%s): starting a new one", build_id, err)
            return None
        if build["buildStatus"] == BUILD_STOPPED:
            # Stopped builds were abandoned (task marked failed, timed out or killed).
            self.log.info("Recorded build %s was stopped: starting a new one", build_id)
            return None
        self.log.info(
            "Reattaching to build %s (%s), started by an earlier try of this task",
            build_id,
            build["buildStatus"],
        )
        return build

    def _start(self, context: Context, record: StartRecord) -> dict[str, Any]:
        generation = record.next_generation
        overrides = self.start_overrides(context, generation)
        self.log.info(
            "Starting a build of %s (namespace %s): %s",
            self.project_name,
            self.namespace or "-",
            self.describe_request(overrides),
        )
        build = self.hook.start_build(self.project_name, **overrides)
        record.started(build["id"], generation)
        self.log.info("Started build %s", build["id"])
        return build

    def _persist_links(self, context: Context, build: dict[str, Any]) -> None:
        region, partition = self.hook.conn_region_name, self.hook.conn_partition
        CodeBuildBuildLink.persist(
            context=context,
            operator=self,
            region_name=region,
            aws_partition=partition,
            build_id=build["id"],
            project_name=self.project_name,
        )
        group, stream = self._log_location(build)
        CodeBuildLogsLink.persist(
            context=context,
            operator=self,
            region_name=region,
            aws_partition=partition,
            log_group=group,
            log_stream=stream,
        )

    def _log_location(self, build: dict[str, Any]) -> tuple[str, str]:
        """The build's log group and stream; CodeBuild's defaults until the build reports them."""
        logs = build.get("logs") or {}
        group = logs.get("groupName") or f"/aws/codebuild/{self.project_name}"
        stream = logs.get("streamName") or build["id"].split(":", 1)[-1]
        return group, stream

    def logs_url(self, build: dict[str, Any]) -> str:
        deep_link = (build.get("logs") or {}).get("deepLink")
        if deep_link:
            return deep_link
        group, stream = self._log_location(build)
        return CodeBuildLogsLink().format_link(
            region_name=self.hook.conn_region_name,
            aws_domain=CodeBuildLogsLink.get_aws_domain(self.hook.conn_partition),
            log_group=group,
            log_stream=stream,
        )

    # --- result ---

    def finish(self, context: Context, build: dict[str, Any]) -> dict[str, Any]:
        """Report a finished build: outputs on success, an exception otherwise."""
        StartRecord(context, self.record_key, self.log).reported()
        self._persist_links(context, build)
        if build["buildStatus"] != BUILD_SUCCEEDED:
            self.log_tail(build)
            raise AirflowException(self.failure_message(build))
        outputs = self.outputs(build)
        self.log.info("Build %s succeeded", build["id"])
        return outputs

    def failure_message(self, build: dict[str, Any]) -> str:
        phase, message = failed_phase(build)
        text = f"Build {build['id']} {build['buildStatus']} in phase {phase}"
        return f"{text}: {message}" if message else text

    def outputs(self, build: dict[str, Any]) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for var in build.get("exportedEnvironmentVariables") or []:
            name, value = var["name"], var.get("value", "")
            if looks_secret(name):
                # Never into XCom: downstream actions read secrets from their store instead.
                mask_secret(value)
                value = "***"
            outputs[name] = value
        outputs.update(
            {
                "BuildId": build["id"],
                "BuildNumber": build.get("buildNumber"),
                "BuildStatus": build["buildStatus"],
                "ResolvedSourceVersion": build.get("resolvedSourceVersion", ""),
                "LogsUrl": self.logs_url(build),
            }
        )
        return outputs

    def log_tail(self, build: dict[str, Any]) -> None:
        """Print the end of the build's CloudWatch log into the task log."""
        logs = build.get("logs") or {}
        group, stream = logs.get("groupName"), logs.get("streamName")
        if not group or not stream:
            self.log.info("Build %s has no CloudWatch log to show", build["id"])
            return
        try:
            hook = AwsLogsHook(
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                config=self.botocore_config,
            )
            events = hook.conn.get_log_events(
                logGroupName=group, logStreamName=stream, limit=LOG_TAIL_LINES, startFromHead=False
            )["events"]
        except Exception as err:
            self.log.warning("Could not read the build log %s/%s: %s", group, stream, err)
            return
        lines = "\n".join(event["message"].rstrip("\n") for event in events)
        self.log.info("Last %d lines of the build log (%s):\n%s", len(events), self.logs_url(build), lines)

    # --- stopping ---

    def running_work_id(self) -> str | None:
        return self._build_id

    def stop_work(self, build_id: str) -> None:
        self.log.info("Stopping build %s", build_id)
        try:
            self.hook.stop_build(build_id)
        except Exception as err:
            self.log.warning("Could not stop build %s: %s", build_id, err)


# --- test.codebuild ----------------------------------------------------------------------------


def parse_junit(xml_text: str) -> list[dict[str, str]]:
    """Test cases of a JUnit XML report as ``{name, status}`` (SUCCEEDED, FAILED, ERROR, SKIPPED)."""
    root = ET.fromstring(xml_text)
    cases = []
    for case in root.iter("testcase"):
        name = case.get("name", "")
        prefix = case.get("classname")
        if case.find("failure") is not None:
            status = "FAILED"
        elif case.find("error") is not None:
            status = "ERROR"
        elif case.find("skipped") is not None:
            status = "SKIPPED"
        else:
            status = "SUCCEEDED"
        cases.append({"name": f"{prefix}.{name}" if prefix else name, "status": status})
    return cases


class TestCodeBuildOperator(CodeBuildOperator):
    """Run tests in a CodeBuild build and report them (action type ``test.codebuild``).

    Takes every CodeBuildOperator argument, plus:

    :param report_group_arn: only read reports of this report group.
    :param junit_path: where the JUnit XML lands when report groups cannot be read: an S3 URI, or a
        key pattern (``*`` allowed) under ``<artifact bucket>/<project>/<build uuid>/`` (default
        ``*.xml`` there when the build has reports). ``{build_id}``, ``{build_uuid}`` and
        ``{project_name}`` are replaced.
    :param fail_on_test_failure: fail the task when a test failed (default), even if the build passed.
    """

    __test__ = False  # not a pytest test class
    template_fields: Sequence[str] = (
        *CodeBuildOperator.template_fields,
        "report_group_arn",
        "junit_path",
        "fail_on_test_failure",
    )
    ui_color = "#d5e8f0"

    def __init__(
        self,
        *,
        report_group_arn: str | None = None,
        junit_path: str | None = None,
        fail_on_test_failure: bool | str = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.report_group_arn = report_group_arn
        self.junit_path = junit_path
        self.fail_on_test_failure = fail_on_test_failure

    def finish(self, context: Context, build: dict[str, Any]) -> dict[str, Any]:
        StartRecord(context, self.record_key, self.log).reported()
        self._persist_links(context, build)
        cases = self.read_test_cases(build)
        failed = [c["name"] for c in cases if c["status"] in ("FAILED", "ERROR")]
        skipped = sum(1 for c in cases if c["status"] == "SKIPPED")
        outputs = self.outputs(build)
        outputs.update(
            {
                "TestsTotal": len(cases),
                "TestsPassed": len(cases) - len(failed) - skipped,
                "TestsFailed": len(failed),
                "TestsSkipped": skipped,
                "FailedTests": ", ".join(failed),
            }
        )
        self.log.info(
            "Tests: %d total, %d passed, %d failed, %d skipped",
            len(cases),
            outputs["TestsPassed"],
            len(failed),
            skipped,
        )
        for name in failed:
            self.log.error("Failed test: %s", name)

        failing_tests = f"{len(failed)} of {len(cases)} tests failed: {', '.join(failed)}"
        if build["buildStatus"] != BUILD_SUCCEEDED:
            self.log_tail(build)
            message = self.failure_message(build)
            raise AirflowException(f"{message}; {failing_tests}" if failed else message)
        if failed and self._fail_on_test_failure:
            raise AirflowException(f"Build {build['id']}: {failing_tests}")
        return outputs

    @property
    def _fail_on_test_failure(self) -> bool:
        value = self.fail_on_test_failure
        if isinstance(value, str):
            return value.strip().lower() not in ("false", "0", "no", "off", "")
        return bool(value)

    def read_test_cases(self, build: dict[str, Any]) -> list[dict[str, str]]:
        """From CodeBuild report groups when they answer, else from the JUnit XML in S3."""
        report_arns = self._report_arns(build)
        if report_arns:
            try:
                cases = []
                for arn in report_arns:
                    for case in self.hook.get_test_cases(arn):
                        name = ".".join(filter(None, (case.get("prefix"), case.get("name"))))
                        cases.append({"name": name, "status": case.get("status", "UNKNOWN")})
                return cases
            except Exception as err:
                self.log.warning("Test reports cannot be read (%s): reading the JUnit XML from S3", err)
        if self.junit_path or report_arns:
            return self._read_junit(build)
        self.log.warning("Build %s has no test report to read", build["id"])
        return []

    def _report_arns(self, build: dict[str, Any]) -> list[str]:
        arns = build.get("reportArns") or []
        if not self.report_group_arn:
            return arns
        # arn:...:report-group/<group> owns reports arn:...:report/<group>:<id>
        group = self.report_group_arn.split("report-group/", 1)[-1]
        return [arn for arn in arns if arn.split("report/", 1)[-1].rsplit(":", 1)[0] == group]

    def _read_junit(self, build: dict[str, Any]) -> list[dict[str, str]]:
        s3 = S3Hook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        )
        location = self._junit_location(build)
        if location is None:
            self.log.warning("Build %s has no artifact bucket to read a JUnit report from", build["id"])
            return []
        bucket, key_pattern = location
        if "*" in key_pattern or "?" in key_pattern:
            prefix = key_pattern.split("*", 1)[0].split("?", 1)[0]
            keys = [k for k in s3.list_keys(bucket, prefix=prefix) if fnmatch.fnmatchcase(k, key_pattern)]
        else:
            keys = [key_pattern]
        cases = []
        for key in keys:
            try:
                cases.extend(parse_junit(s3.read_key(key, bucket)))
            except Exception as err:
                self.log.warning("Could not read the JUnit report s3://%s/%s: %s", bucket, key, err)
        if not keys:
            self.log.warning("No JUnit report matches s3://%s/%s", bucket, key_pattern)
        return cases

    def _junit_location(self, build: dict[str, Any]) -> tuple[str, str] | None:
        build_uuid = build["id"].split(":", 1)[-1]
        path = (
            (self.junit_path or "*.xml")
            .replace("{build_id}", build["id"])
            .replace("{build_uuid}", build_uuid)
            .replace("{project_name}", self.project_name)
        )
        if path.startswith("s3://"):
            bucket, _, key = path[len("s3://") :].partition("/")
            return bucket, key
        # Reports land under <artifact bucket>/<project>/<build uuid>/. The build's artifacts
        # location is "bucket[/key]" or an S3 ARN of it: only its bucket counts here.
        location = (build.get("artifacts") or {}).get("location") or ""
        if location.startswith("arn:"):
            location = location.split(":::", 1)[-1]
        bucket = location.split("/", 1)[0]
        if not bucket:
            return None
        return bucket, f"{self.project_name}/{build_uuid}/{path.lstrip('/')}"
