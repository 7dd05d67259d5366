"""What the CodeBuild and CodeDeploy actions share: reattaching to work a task already started, and
stopping it when the task is killed or its deferred wait times out. See docs/operators.md.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.common.compat.sdk import redact

if TYPE_CHECKING:
    from airflow.sdk import Context


def looks_secret(name: str) -> bool:
    """Whether Airflow's secrets masker treats values under this name as sensitive."""
    return redact("x", name) != "x"


def stable_token(context: Context, *parts: Any) -> str:
    """A deterministic id for this task instance (not its try), plus ``parts``."""
    ti = context["ti"]
    key = "|".join(str(p) for p in (ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), *parts))
    return hashlib.sha256(key.encode()).hexdigest()


def defer_timeout(operator: AwsBaseOperator, context: Context) -> timedelta | None:
    """What is left of execution_timeout: Airflow does not apply it to deferred waits itself."""
    if not operator.execution_timeout:
        return None
    started = getattr(context.get("ti"), "start_date", None)
    if started is None:
        return operator.execution_timeout
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    left = operator.execution_timeout - (datetime.now(timezone.utc) - started)
    return max(left, timedelta(seconds=1))


def trigger_kwargs(operator: AwsBaseOperator, context: Context, result: Any) -> dict[str, Any]:
    """What every action's BatchPolledTrigger takes from its operator besides the id: the connection, the
    poll interval, the result that ends the task and the notices it publishes when it ends the task."""
    from release_orchestrator.notifications.notifier import failure_notices, success_notices

    return {
        **connection_kwargs(operator),
        "poll_interval": operator.poll_interval,
        "result": result.to_dict(),
        "failure_notices": failure_notices(operator, context),
        "success_notices": success_notices(operator),
    }


def connection_kwargs(operator: AwsBaseOperator) -> dict[str, Any]:
    """The operator's AWS connection settings, as the result objects and triggers of every action take them."""
    return {
        "aws_conn_id": operator.aws_conn_id,
        "region_name": operator.region_name,
        "verify": operator.verify,
        "botocore_config": operator.botocore_config,
    }


def is_timeout_resume(next_method: str, next_kwargs: dict[str, Any] | None) -> bool:
    """Whether the task is resumed only to fail because its deferred wait timed out."""
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

    return next_method == TRIGGER_FAIL_REPR and (next_kwargs or {}).get("error") == TriggerFailureReason.TRIGGER_TIMEOUT


class StartRecord:
    """What this task instance started, in Airflow's task state store.

    The store (``context["task_state_store"]``, Airflow 3.3) is kept per task instance across
    tries and clears, where XCom is wiped at the start of every new try. The entry is
    ``{"id", "generation", "reported", ...extra}``: ``reported`` turns true once a try has
    reported the result (success or failure) to Airflow; ``generation`` counts the starts and
    goes into idempotency tokens, so a deliberate new start never reuses an earlier one's token.
    """

    def __init__(self, context: Context, key: str, log) -> None:
        self.key = key
        self._store = context.get("task_state_store")
        self.entry: dict[str, Any] = {}
        if self._store is None:
            log.warning("No task state store: a later try cannot reattach to what this one starts")
        else:
            self.entry = dict(self._store.get(key) or {})

    @property
    def pending_id(self) -> str | None:
        """The recorded id, unless a try already reported its result."""
        if self.entry and not self.entry.get("reported"):
            return self.entry.get("id")
        return None

    @property
    def next_generation(self) -> int:
        return self.entry["generation"] + 1 if self.entry else 0

    def started(self, resource_id: str, generation: int, **extra: Any) -> None:
        self.entry = {"id": resource_id, "generation": generation, "reported": False, **extra}
        self._save()

    def reported(self) -> None:
        if self.entry and not self.entry.get("reported"):
            self.entry["reported"] = True
            self._save()

    def _save(self) -> None:
        if self._store is not None:
            self._store.set(self.key, self.entry)


class StopsItsWork:
    """on_kill and timed-out waits stop the AWS work the task started.

    Subclasses name their record (``record_key``), the id of the work this worker started
    (``running_work_id``) and how to stop it (``stop_work``).
    """

    record_key: str

    def running_work_id(self) -> str | None:
        raise NotImplementedError

    def stop_work(self, work_id: str) -> None:
        raise NotImplementedError

    def on_kill(self) -> None:
        """The task was killed or timed out while this worker ran it: stop its work."""
        if work_id := self.running_work_id():
            self.stop_work(work_id)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context):
        if is_timeout_resume(next_method, next_kwargs):
            # The deferred wait outlived its timeout: the task fails, so its work must stop too.
            record = StartRecord(context, self.record_key, self.log)
            if record.pending_id:
                self.stop_work(record.pending_id)
                record.reported()
        return super().resume_execution(next_method, next_kwargs, context)
