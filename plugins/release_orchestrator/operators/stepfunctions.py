"""Step Functions action ``invoke.stepfunctions``: start an execution of a state machine and wait for it.

The execution is started with a name derived from the task instance, so a retry of a try that crashed
before recording it starts nothing new (StartExecution with the same name and input returns the running
execution); then it is waited for deferred (the triggerer's shared batched poller). See docs/operators.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.step_function import StateMachineExecutionsDetailsLink
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.artifacts import PassesArtifacts
from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.hooks.stepfunctions import (
    EXECUTION_TERMINAL_STATES,
    StepFunctionsHook,
    execution_arn,
)
from release_orchestrator.operators.reattach import (
    StartRecord,
    StopsItsWork,
    connection_kwargs,
    defer_timeout,
    stable_token,
    trigger_kwargs,
)
from release_orchestrator.pipeline.files import artifact_file, is_file_path, read_spec_file
from release_orchestrator.results.stepfunctions import ExecutionResult
from release_orchestrator.triggers.stepfunctions import STOP_CAUSE, STOP_ERROR, StepFunctionsExecutionTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

# Execution names: 1-80 letters, digits, '-' and '_'. The task's part takes 32, the prefix at most 47.
EXECUTION_NAME_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{0,47}$")
NAME_TOKEN_LENGTH = 32
SYNC_WAIT_MAX_ATTEMPTS = 1_000_000


def execution_input(value: Any, spec_folder: str | None, read: Callable[[str], str] | None = None) -> str:
    """The execution's input as JSON text: a mapping or list, JSON text, or the content of the JSON file
    a path names (inside the spec's folder when ``spec_folder`` is given; `read` reads a file in an input
    artifact, 'Artifact::path')."""
    if value is None or value == "":
        return "{}"
    if isinstance(value, (Mapping, list)):
        return json.dumps(value)
    what = "input"
    if artifact_file(value):
        if read is None:
            raise ValueError(f"input: {value} is read from an input artifact when the action runs")
        value, what = read(value), f"input file {value}"
    elif is_file_path(value):
        value, what = read_spec_file(value, spec_folder, "input"), f"input file {value}"
    try:
        json.loads(value)
    except ValueError as err:
        raise ValueError(f"{what} is not JSON: {err}") from None
    return value


class StepFunctionsOperator(PassesArtifacts, StopsItsWork, AwsBaseOperator[StepFunctionsHook]):
    """Run a Step Functions state machine (action type ``invoke.stepfunctions``).

    :param state_machine_arn: the state machine (a standard workflow: express ones cannot be described).
    :param execution_name_prefix: put before the task's own part of the execution name.
    :param input: the execution's input: a mapping, JSON text, or the path of a JSON file.
    :param spec_folder: the folder of the spec the action comes from: an input file is read only when it is
        inside (links followed). None (an operator in a DAG file) reads any path.
    :param poll_interval: seconds between two looks at the execution.
    :param deferrable: wait in the triggerer (default) instead of a worker slot.
    """

    aws_hook_class = StepFunctionsHook
    template_fields: Sequence[str] = aws_template_fields("state_machine_arn", "execution_name_prefix", "input")
    template_fields_renderers = {"input": "json"}
    ui_color = "#f8e1f2"
    operator_extra_links = (StateMachineExecutionsDetailsLink(),)

    record_key = "stepfunctions_execution"

    def __init__(
        self,
        *,
        state_machine_arn: str,
        execution_name_prefix: str | None = None,
        input: dict[str, Any] | str | None = None,  # CodePipeline's name for it
        spec_folder: str | None = None,
        poll_interval: float = 15,
        deferrable: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.state_machine_arn = state_machine_arn
        self.execution_name_prefix = execution_name_prefix
        self.input = input
        self.spec_folder = spec_folder
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self._execution_arn: str | None = None

    def result(self) -> ExecutionResult:
        """How a finished execution becomes this action's outputs or failure (also run by the trigger)."""
        return ExecutionResult(
            state_machine_arn=self.state_machine_arn,
            **connection_kwargs(self),
        )

    def execution_name(self, context: Context, generation: int) -> str:
        """The prefix and this task instance's start number, hashed: the same for a retry of a lost start."""
        prefix = self.execution_name_prefix or ""
        if not EXECUTION_NAME_PREFIX_RE.match(prefix):
            raise ValueError(f"execution_name_prefix {prefix!r} must be at most 47 letters, digits, '-' or '_'")
        token = stable_token(context, "stepfunctions", generation)[:NAME_TOKEN_LENGTH]
        return f"{prefix}-{token}" if prefix else token

    def execute(self, context: Context) -> dict[str, Any]:
        record = StartRecord(context, self.record_key, self.log)
        execution = self._reattach(record) or self._start(context, record)
        self._execution_arn = execution["executionArn"]
        StateMachineExecutionsDetailsLink.persist(
            context=context,
            operator=self,
            region_name=self.hook.conn_region_name,
            aws_partition=self.hook.conn_partition,
            execution_arn=execution["executionArn"],
        )
        if execution["status"] in EXECUTION_TERMINAL_STATES:
            return self.finish(context, execution)
        if self.deferrable:
            # The trigger ends the task itself (outputs or failure): it never resumes here.
            self.defer(
                trigger=StepFunctionsExecutionTrigger(
                    execution_arn=execution["executionArn"], **trigger_kwargs(self, context, self.result())
                ),
                method_name="execute_complete",
                timeout=defer_timeout(self, context),
            )
        self.log.info("Waiting for execution %s", execution["executionArn"])
        self.hook.get_waiter("execution_finished").wait(
            executionArn=execution["executionArn"],
            WaiterConfig={"Delay": int(float(self.poll_interval)), "MaxAttempts": SYNC_WAIT_MAX_ATTEMPTS},
        )
        return self.finish(context, self.hook.describe(execution["executionArn"]))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resumption by a trigger that did not end the task itself (it always does; kept for Airflow's API)."""
        if not event:
            raise AirflowException("Trigger error: event is None")
        self._execution_arn = event.get("execution_arn")
        if event.get("status") == "error":
            raise AirflowException(event.get("message", f"Waiting for execution {self._execution_arn} failed"))
        return self.finish(context, self.hook.describe(event["execution_arn"]))

    def _reattach(self, record: StartRecord) -> dict[str, Any] | None:
        arn = record.pending_id
        if not arn:
            return None
        try:
            execution = self.hook.describe(arn)
        except Exception as err:
            self.log.warning("Recorded execution %s cannot be read (%s): starting a new one", arn, err)
            return None
        if execution["status"] in EXECUTION_TERMINAL_STATES:
            # Reported by the trigger that ended the earlier try, or abandoned (stopped): a new try starts anew.
            self.log.info("Recorded execution %s has finished (%s): starting a new one", arn, execution["status"])
            return None
        self.log.info("Reattaching to execution %s, started by an earlier try of this task", arn)
        return execution

    def _start(self, context: Context, record: StartRecord) -> dict[str, Any]:
        generation = record.next_generation
        name = self.execution_name(context, generation)
        self.load_artifact_files(context, ("input",))
        text = execution_input(self.input, self.spec_folder, lambda v: self.file_text(v, "input", self.spec_folder))
        self.log.info("Starting execution %s of %s", name, self.state_machine_arn)
        try:
            arn = self.hook.start_named_execution(self.state_machine_arn, name, text)
        except AwsCallError as err:
            if err.code != "ExecutionAlreadyExists":
                raise
            # A lost try's execution that has finished since (a running one would have been returned).
            arn = execution_arn(self.state_machine_arn, name)
            execution = self.hook.describe(arn)
            if execution.get("input") != text:
                raise AirflowException(
                    f"StartExecution on state machine '{self.state_machine_arn}' failed: an execution named "
                    f"{name} exists with another input ({arn}); it belongs to an earlier start of this task"
                ) from err
            self.log.info("Execution %s of an earlier try of this task has finished (%s)", arn, execution["status"])
            record.started(arn, generation)
            return execution
        record.started(arn, generation)
        self.log.info("Started execution %s", arn)
        return self.hook.describe(arn)

    def finish(self, context: Context, execution: dict[str, Any]) -> dict[str, Any]:
        """Report a finished execution here in the worker: outputs on success, an exception otherwise."""
        StartRecord(context, self.record_key, self.log).reported()
        return self.result().conclude(execution, self.log)

    def running_work_id(self) -> str | None:
        return self._execution_arn

    def stop_work(self, arn: str) -> None:
        self.log.info("Stopping execution %s", arn)
        try:
            self.hook.stop(arn, STOP_ERROR, STOP_CAUSE)
        except Exception as err:
            self.log.warning("Could not stop execution %s: %s", arn, err)
