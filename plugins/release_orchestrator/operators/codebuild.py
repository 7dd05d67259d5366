"""CodeBuild actions: ``build.codebuild`` and ``test.codebuild``.

Both start a build, wait for it deferred (the triggerer's shared batched poller), and return the
action's output variables. See docs/operators.md for the reattach and stop rules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException, mask_secret

from release_orchestrator.artifacts import ArtifactLocation, PassesArtifacts
from release_orchestrator.hooks.codebuild import (
    BUILD_TERMINAL_STATES,
    CodeBuildHook,
)
from release_orchestrator.links import CodeBuildBuildLink, CodeBuildLogsLink
from release_orchestrator.operators.reattach import (
    StartRecord,
    StopsItsWork,
    connection_kwargs,
    defer_timeout,
    looks_secret,
    stable_token,
    trigger_kwargs,
)
from release_orchestrator.pipeline.action_types import secret_word
from release_orchestrator.results.codebuild import BuildResult, TestReport, failed_phase, parse_junit
from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

ENV_TYPES = ("PLAINTEXT", "PARAMETER_STORE", "SECRETS_MANAGER")
__all__ = ["CodeBuildOperator", "TestCodeBuildOperator", "failed_phase", "parse_junit"]
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


def s3_artifact(target: ArtifactLocation) -> dict[str, str]:
    """StartBuild's override that puts a build artifact, zipped, at `target`'s key."""
    folder, _, name = target.key.rpartition("/")
    return {
        "type": "S3",
        "location": target.bucket,
        "path": folder,
        "name": name,
        "namespaceType": "NONE",
        "packaging": "ZIP",
    }


class CodeBuildOperator(PassesArtifacts, StopsItsWork, AwsBaseOperator[CodeBuildHook]):
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
    # The build's page first: a failure notice links the first link with data.
    operator_extra_links = (CodeBuildBuildLink(), CodeBuildLogsLink())

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
        """Register secret values with the masker (again in each process: masks are per process): those
        of names Airflow or the spec's validator call secret, and parameter and secret names."""
        try:
            variables = normalize_environment_variables(self.environment_variables)
        except (ValueError, TypeError, KeyError, AttributeError):
            return  # not a valid list: execute() says why
        for var in variables:
            if var["value"] and (var["type"] != "PLAINTEXT" or looks_secret(var["name"]) or secret_word(var["name"])):
                mask_secret(var["value"])

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        # Airflow stores the rendered view (redacted by the masker) right after rendering, before
        # execute(): the values must be known to the masker by then.
        self.mask_secrets()

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
        if self.input_names:
            # The primary input artifact is the build's source (CodePipeline's override of the project's
            # source); the others are secondary sources, found in CODEBUILD_SRC_DIR_<artifact name>.
            primary = self.primary_source if self.primary_source in self.input_names else self.input_names[0]
            source = self.input_artifact(context, primary)
            overrides["sourceTypeOverride"] = "S3"
            overrides["sourceLocationOverride"] = source.bucket_and_key
            secondary = [self.input_artifact(context, name) for name in self.input_names if name != primary]
            if secondary:
                overrides["secondarySourcesOverride"] = [
                    {"type": "S3", "location": extra.bucket_and_key, "sourceIdentifier": extra.name}
                    for extra in secondary
                ]
        else:
            overrides.update(self._source_override())
        if self.output_names:
            # The first output is the buildspec's `artifacts`; the others its `secondary-artifacts.<name>`.
            first, *others = (self.output_artifact(context, name) for name in self.output_names)
            overrides["artifactsOverride"] = s3_artifact(first)
            if self.artifacts.get("kms_key"):  # CodeBuild encrypts the artifacts it writes with the store's key
                overrides["encryptionKeyOverride"] = self.artifacts["kms_key"]
            if others:
                overrides["secondaryArtifactsOverride"] = [
                    {**s3_artifact(target), "artifactIdentifier": target.name} for target in others
                ]
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
        return {}  # an input artifact's name is handled by start_overrides (with the action's artifacts)

    def describe_request(self, overrides: dict[str, Any]) -> str:
        """The request for the log: variable names and types, never their values."""
        shown = {k: v for k, v in overrides.items() if k not in ("environmentVariablesOverride", "buildspecOverride")}
        if self.env_overrides:
            shown["environmentVariables"] = [f"{v['name']} ({v['type']})" for v in self.env_overrides]
        if "buildspecOverride" in overrides:
            shown["buildspecOverride"] = "<inline>" if "\n" in self.buildspec else self.buildspec
        return json.dumps(shown)

    # --- execution ---

    def result(self) -> BuildResult:
        """How a finished build becomes this action's outputs or failure (also run by the trigger)."""
        return BuildResult(
            project_name=self.project_name,
            **connection_kwargs(self),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        self.mask_secrets()
        record = StartRecord(context, self.record_key, self.log)
        build = self._reattach(record) or self._start(context, record)
        self._build_id = build["id"]
        self.record_locations(context)
        self._persist_links(context, build)
        if build["buildStatus"] in BUILD_TERMINAL_STATES:
            return self.finish(context, build)
        if self.deferrable:
            # The trigger ends the task itself (outputs or failure): it never resumes here.
            self.defer(
                trigger=CodeBuildBuildTrigger(build_id=build["id"], **trigger_kwargs(self, context, self.result())),
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
        """Resumption by a trigger of an earlier version, which did not end the task itself."""
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
        if build["buildStatus"] in BUILD_TERMINAL_STATES:
            # Finished builds were reported, by the trigger that ended the earlier try, or were
            # abandoned (stopped): a new try is a new build.
            self.log.info("Recorded build %s has finished (%s): starting a new one", build_id, build["buildStatus"])
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
        group, stream = self.result().log_location(build)
        CodeBuildLogsLink.persist(
            context=context,
            operator=self,
            region_name=region,
            aws_partition=partition,
            log_group=group,
            log_stream=stream,
        )

    # --- result ---

    def finish(self, context: Context, build: dict[str, Any]) -> dict[str, Any]:
        """Report a finished build here in the worker: outputs on success, an exception otherwise."""
        StartRecord(context, self.record_key, self.log).reported()
        self._persist_links(context, build)
        return self.result().conclude(build, self.log)

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

    def result(self) -> BuildResult:
        result = super().result()
        result.tests = asdict(
            TestReport(
                report_group_arn=self.report_group_arn,
                junit_path=self.junit_path,
                fail_on_test_failure=self.fail_on_test_failure,
            )
        )
        return result
