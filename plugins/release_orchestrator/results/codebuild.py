"""What a finished CodeBuild build means for ``build.codebuild`` and ``test.codebuild``.

`BuildResult` is plain data (it travels in the trigger's kwargs) and turns a finished build into the
action's outputs or an `ActionFailed`: exported variables (secret-looking ones masked), the build's
ids and log link, the end of the build log on failure, and for tests the test cases read from
CodeBuild report groups or a JUnit XML in S3.
"""

from __future__ import annotations

import fnmatch
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.common.compat.sdk import mask_secret

from release_orchestrator.hooks.codebuild import BUILD_SUCCEEDED, CodeBuildHook
from release_orchestrator.links import CodeBuildLogsLink
from release_orchestrator.operators.reattach import looks_secret
from release_orchestrator.results import ActionFailed, AwsResult

LOG_TAIL_LINES = 30


def failed_phase(build: dict[str, Any]) -> tuple[str, str]:
    """The first phase that did not succeed, and its context message."""
    for phase in build.get("phases", []):
        if phase.get("phaseStatus") not in (None, "SUCCEEDED"):
            contexts = phase.get("contexts") or []
            message = "; ".join(": ".join(filter(None, (c.get("statusCode"), c.get("message")))) for c in contexts)
            return phase.get("phaseType", "UNKNOWN"), message
    return build.get("currentPhase", "UNKNOWN"), ""


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


def as_flag(value: Any) -> bool:
    """A boolean that may arrive as a rendered template string."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


@dataclass
class TestReport:
    """Where ``test.codebuild`` reads its test cases, and whether a failed test fails the action."""

    __test__ = False  # not a pytest test class

    report_group_arn: str | None = None
    junit_path: str | None = None
    fail_on_test_failure: bool | str = True


@dataclass
class BuildResult(AwsResult):
    """Outputs or failure of a finished build of ``project_name`` (``tests`` for test.codebuild)."""

    project_name: str
    tests: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> CodeBuildHook:
        return self.shared_hook(CodeBuildHook)

    # --- the verdict ---

    def conclude(self, build: dict[str, Any], log: logging.Logger | Any) -> dict[str, Any]:
        """The action's outputs; raises ActionFailed when the build (or, for tests, a test) failed."""
        if self.tests is not None:
            return self._conclude_tests(build, log)
        if build["buildStatus"] != BUILD_SUCCEEDED:
            self.log_tail(build, log)
            raise ActionFailed(self.failure_message(build))
        log.info("Build %s succeeded", build["id"])
        return self.outputs(build)

    def _conclude_tests(self, build: dict[str, Any], log: Any) -> dict[str, Any]:
        report = TestReport(**(self.tests or {}))
        cases = self.read_test_cases(build, report, log)
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
        log.info(
            "Tests: %d total, %d passed, %d failed, %d skipped",
            len(cases),
            outputs["TestsPassed"],
            len(failed),
            skipped,
        )
        for name in failed:
            log.error("Failed test: %s", name)
        failing_tests = f"{len(failed)} of {len(cases)} tests failed: {', '.join(failed)}"
        if build["buildStatus"] != BUILD_SUCCEEDED:
            self.log_tail(build, log)
            message = self.failure_message(build)
            raise ActionFailed(f"{message}; {failing_tests}" if failed else message)
        if failed and as_flag(report.fail_on_test_failure):
            raise ActionFailed(f"Build {build['id']}: {failing_tests}")
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

    # --- the build log ---

    def log_location(self, build: dict[str, Any]) -> tuple[str, str]:
        """The build's log group and stream; CodeBuild's defaults until the build reports them."""
        logs = build.get("logs") or {}
        group = logs.get("groupName") or f"/aws/codebuild/{self.project_name}"
        stream = logs.get("streamName") or build["id"].split(":", 1)[-1]
        return group, stream

    def logs_url(self, build: dict[str, Any]) -> str:
        deep_link = (build.get("logs") or {}).get("deepLink")
        if deep_link:
            return deep_link
        group, stream = self.log_location(build)
        return CodeBuildLogsLink().format_link(
            region_name=self.hook.conn_region_name,
            aws_domain=CodeBuildLogsLink.get_aws_domain(self.hook.conn_partition),
            log_group=group,
            log_stream=stream,
        )

    def log_tail(self, build: dict[str, Any], log: Any) -> None:
        """Print the end of the build's CloudWatch log into the task log."""
        logs = build.get("logs") or {}
        group, stream = logs.get("groupName"), logs.get("streamName")
        if not group or not stream:
            log.info("Build %s has no CloudWatch log to show", build["id"])
            return
        try:
            events = self.shared_hook(AwsLogsHook).conn.get_log_events(
                logGroupName=group, logStreamName=stream, limit=LOG_TAIL_LINES, startFromHead=False
            )["events"]
        except Exception as err:
            log.warning("Could not read the build log %s/%s: %s", group, stream, err)
            return
        lines = "\n".join(event["message"].rstrip("\n") for event in events)
        log.info("Last %d lines of the build log (%s):\n%s", len(events), self.logs_url(build), lines)

    # --- test reports ---

    def read_test_cases(self, build: dict[str, Any], report: TestReport, log: Any) -> list[dict[str, str]]:
        """From CodeBuild report groups when they answer, else from the JUnit XML in S3."""
        report_arns = self._report_arns(build, report)
        if report_arns:
            try:
                cases = []
                for arn in report_arns:
                    for case in self.hook.get_test_cases(arn):
                        name = ".".join(filter(None, (case.get("prefix"), case.get("name"))))
                        cases.append({"name": name, "status": case.get("status", "UNKNOWN")})
                return cases
            except Exception as err:
                log.warning("Test reports cannot be read (%s): reading the JUnit XML from S3", err)
        if report.junit_path or report_arns:
            return self._read_junit(build, report, log)
        log.warning("Build %s has no test report to read", build["id"])
        return []

    @staticmethod
    def _report_arns(build: dict[str, Any], report: TestReport) -> list[str]:
        arns = build.get("reportArns") or []
        if not report.report_group_arn:
            return arns
        # arn:...:report-group/<group> owns reports arn:...:report/<group>:<id>
        group = report.report_group_arn.split("report-group/", 1)[-1]
        return [arn for arn in arns if arn.split("report/", 1)[-1].rsplit(":", 1)[0] == group]

    def _read_junit(self, build: dict[str, Any], report: TestReport, log: Any) -> list[dict[str, str]]:
        s3 = self.shared_hook(S3Hook)
        location = self.junit_location(build, report)
        if location is None:
            log.warning("Build %s has no artifact bucket to read a JUnit report from", build["id"])
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
                log.warning("Could not read the JUnit report s3://%s/%s: %s", bucket, key, err)
        if not keys:
            log.warning("No JUnit report matches s3://%s/%s", bucket, key_pattern)
        return cases

    def junit_location(self, build: dict[str, Any], report: TestReport) -> tuple[str, str] | None:
        build_uuid = build["id"].split(":", 1)[-1]
        path = (
            (report.junit_path or "*.xml")
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
