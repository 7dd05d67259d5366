"""Elastic Beanstalk action ``deploy.elasticbeanstalk``: deploy a source bundle in S3 to an environment.

An application version is created from the bundle (its label derived from the task instance, so a retry
reuses it), the environment is updated to it, and the update is waited for deferred (the triggerer's
shared batched poller) until the environment is Ready again. See docs/operators.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.artifacts import PassesArtifacts
from release_orchestrator.hooks.elasticbeanstalk import (
    ENVIRONMENT_READY,
    ENVIRONMENT_SETTLED_STATES,
    ElasticBeanstalkHook,
)
from release_orchestrator.links import ElasticBeanstalkEnvironmentLink
from release_orchestrator.operators.reattach import (
    StartRecord,
    StopsItsWork,
    connection_kwargs,
    defer_timeout,
    stable_token,
    trigger_kwargs,
)
from release_orchestrator.results.elasticbeanstalk import EnvironmentResult
from release_orchestrator.triggers.elasticbeanstalk import ElasticBeanstalkEnvironmentTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

SYNC_WAIT_MAX_ATTEMPTS = 1_000_000
VERSION_LABEL_MAX = 100  # Elastic Beanstalk's limit
LABEL_TOKEN_LENGTH = 16


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; ValueError naming the value otherwise."""
    bucket, _, key = str(uri).removeprefix("s3://").partition("/")
    if not str(uri).startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise ValueError(f"source must be an S3 object as s3://bucket/key, not {uri!r}")
    return bucket, key


class ElasticBeanstalkOperator(PassesArtifacts, StopsItsWork, AwsBaseOperator[ElasticBeanstalkHook]):
    """Deploy a bundle to an Elastic Beanstalk environment (action type ``deploy.elasticbeanstalk``).

    :param application_name: the Elastic Beanstalk application.
    :param environment_name: its environment to update.
    :param source: the source bundle, ``s3://bucket/key`` (a zip, or a war for Java), when the action has no
        input artifact.
    :param description: the application version's description.
    :param poll_interval: seconds between two looks at the environment.
    :param deferrable: wait in the triggerer (default) instead of a worker slot.
    """

    aws_hook_class = ElasticBeanstalkHook
    template_fields: Sequence[str] = aws_template_fields(
        "application_name", "environment_name", "source", "description"
    )
    ui_color = "#e6f0d5"
    operator_extra_links = (ElasticBeanstalkEnvironmentLink(),)

    record_key = "elasticbeanstalk_update"

    def __init__(
        self,
        *,
        application_name: str,
        environment_name: str,
        source: str | None = None,
        description: str | None = None,
        poll_interval: float = 15,
        deferrable: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.application_name = application_name
        self.environment_name = environment_name
        self.source = source
        self.description = description
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._environment_id: str | None = None

    @property
    def _where(self) -> str:
        return f"{self.application_name}/{self.environment_name}"

    def version_label(self, context: Context, generation: int) -> str:
        """The DAG's name and this task instance's start number, hashed: the same for a retry of a lost start."""
        token = stable_token(context, "elasticbeanstalk", generation)[:LABEL_TOKEN_LENGTH]
        return f"{context['ti'].dag_id[: VERSION_LABEL_MAX - LABEL_TOKEN_LENGTH - 1]}-{token}"

    def result(self, version_label: str, since: str | None) -> EnvironmentResult:
        """How the settled environment becomes this action's outputs or failure (also run by the trigger)."""
        return EnvironmentResult(
            application_name=self.application_name,
            environment_name=self.environment_name,
            version_label=version_label,
            since=since,
            **connection_kwargs(self),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        if self.input_names:  # the input artifact is the bundle
            bundle = self.input_artifact(context)
            bucket, key = bundle.bucket, bundle.key
        else:
            bucket, key = parse_s3_uri(self.source or "")  # before anything is created
        record = StartRecord(context, self.record_key, self.log)
        environment = self._reattach(record) or self._deploy(context, record, bucket, key)
        self._environment_id = environment["EnvironmentId"]
        ElasticBeanstalkEnvironmentLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            environment_id=environment["EnvironmentId"],
        )
        result = self.result(record.entry["label"], record.entry.get("since"))
        if environment["Status"] in ENVIRONMENT_SETTLED_STATES:
            return self.finish(context, result, environment)
        if self.deferrable:
            # The trigger ends the task itself (outputs or failure): it never resumes here.
            self.defer(
                trigger=ElasticBeanstalkEnvironmentTrigger(
                    environment_id=environment["EnvironmentId"], **trigger_kwargs(self, context, result)
                ),
                method_name="execute_complete",
                timeout=defer_timeout(self, context),
            )
        self.log.info("Waiting for environment %s to settle", self._where)
        self.hook.get_waiter("environment_settled").wait(
            EnvironmentIds=[environment["EnvironmentId"]],
            WaiterConfig={"Delay": int(float(self.poll_interval)), "MaxAttempts": SYNC_WAIT_MAX_ATTEMPTS},
        )
        return self.finish(context, result, self.hook.environments_by_id([environment["EnvironmentId"]])[0])

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumption by a trigger that did not end the task itself (it always does; kept for Airflow's API)."""
        if not event:
            raise AirflowException("Trigger error: event is None")
        self._environment_id = event.get("environment_id")
        if event.get("status") == "error":
            raise AirflowException(event.get("message", f"Waiting for environment {self._where} failed"))
        entry = StartRecord(context, self.record_key, self.log).entry
        environment = self.hook.environments_by_id([event["environment_id"]])[0]
        return self.finish(context, self.result(entry.get("label", ""), entry.get("since")), environment)

    def _reattach(self, record: StartRecord) -> dict[str, Any] | None:
        environment_id = record.pending_id
        if not environment_id:
            return None
        try:
            found = self.hook.environments_by_id([environment_id])
        except Exception as err:
            self.log.warning("Recorded environment %s cannot be read (%s): deploying anew", environment_id, err)
            return None
        environment = found[0] if found else None
        if environment is None:
            return None
        label = record.entry.get("label")
        if environment["Status"] in ENVIRONMENT_SETTLED_STATES:
            # Reported by the trigger that ended the earlier try, or abandoned (aborted): a new try deploys anew.
            self.log.info("The update of %s to version %s has ended: deploying anew", self._where, label)
            return None
        self.log.info("Reattaching to the update of %s to version %s, made by an earlier try", self._where, label)
        return environment

    def _deploy(self, context: Context, record: StartRecord, bucket: str, key: str) -> dict[str, Any]:
        generation = record.next_generation
        label = self.version_label(context, generation)
        if self.hook.application_version(self.application_name, label):
            self.log.info("Application version %s exists already (an earlier try made it): reusing it", label)
        else:
            ti = context["ti"]
            description = self.description or f"{ti.dag_id} {ti.run_id} {ti.task_id}"
            self.hook.create_application_version(self.application_name, label, bucket, key, description)
            self.log.info("Created application version %s from s3://%s/%s", label, bucket, key)
        environment = self.hook.environment(self.application_name, self.environment_name)
        if environment is None:
            raise AirflowException(
                f"DescribeEnvironments on environment '{self._where}' found no such environment "
                f"in application {self.application_name}"
            )
        since = datetime.now(timezone.utc).isoformat()
        if environment.get("VersionLabel") == label and environment["Status"] != ENVIRONMENT_READY:
            # An earlier try updated it and was lost before recording that.
            self.log.info("Environment %s is already updating to version %s: waiting for it", self._where, label)
        else:
            self.log.info("Updating environment %s to version %s", self._where, label)
            environment = self.hook.update_environment(self.application_name, self.environment_name, label)
        record.started(environment["EnvironmentId"], generation, label=label, since=since)
        return environment

    def finish(self, context: Context, result: EnvironmentResult, environment: dict[str, Any]) -> dict[str, Any]:
        """Report the settled environment here in the worker: outputs on success, an exception otherwise."""
        StartRecord(context, self.record_key, self.log).reported()
        return result.conclude(environment, self.log)

    def running_work_id(self) -> str | None:
        return self._environment_id

    def stop_work(self, environment_id: str) -> None:
        self.log.info("Aborting the update of environment %s", environment_id)
        try:
            self.hook.abort_environment_update(environment_id)
        except Exception as err:
            self.log.warning("Could not abort the update of environment %s: %s", environment_id, err)
