"""Pipeline notifications on the amazon provider's SNS notifier.

`PipelineEventNotifier` is an `SnsNotifier` whose message is built from the callback context: the
compiler attaches one per wanted event as a DAG or task callback. Publishing goes through the
provider's SnsHook and `publishing` (retried, then logged as an error without changing the
pipeline's own outcome; published at most once per task instance where it runs in the worker).
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime, timezone
from typing import Any

from airflow.providers.amazon.aws.links.base_aws import BaseAwsLink
from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.publishing import (
    DECISION_XCOM_KEY,
    SentLog,
    airflow_base_url,
    publish,
    publish_once,
    split_task_id,
)
from release_orchestrator.results import failure_reason, own_xcom

log = logging.getLogger(__name__)

# XCom of a task its trigger failed: the failure events the trigger published itself.
FAILURE_NOTICES_XCOM_KEY = "failure_notices"
FAILURE_EVENTS = ("action-failed", "stage-failed")
# XCom of a task its trigger ended successfully: the success events the trigger published itself.
SUCCESS_NOTICES_XCOM_KEY = "success_notices"
SUCCESS_EVENTS = ("action-succeeded",)
# Stages and actions starting and succeeding: opt-in, attached by notifications/lifecycle.py.
LIFECYCLE_EVENTS = ("stage-started", "stage-succeeded", "action-started", "action-succeeded")


def execution_type(conf: Any) -> dict[str, Any]:
    """A pipeline event's execution type, as CodePipeline's (STANDARD, or ROLLBACK with the run rolled back
    to and whether a failure or a person started it: stages/rollback.py)."""
    from release_orchestrator.stages.rollback import RollbackRefused, rollback_of

    try:
        rollback = rollback_of(conf if isinstance(conf, dict) else None)
    except RollbackRefused:
        rollback = None
    if rollback is None:
        return {"execution-type": "STANDARD"}
    return {
        "execution-type": "ROLLBACK",
        "execution-trigger": {"trigger-type": "AutomatedRollback" if rollback.held_by else "ManualRollback"},
        "rollback-metadata": {"rollback-target-pipeline-execution": rollback.target_run_id, "stage": rollback.stage},
    }


def is_superseded(error: Any) -> bool:
    """Whether a task failed because a newer run superseded it (not a failure of the release)."""
    return getattr(error, "superseded_by", None) is not None


class PipelineEventNotifier(SnsNotifier):
    """Publishes one CodePipeline-shaped state-change event to SNS from a DAG or task callback."""

    def __init__(
        self,
        *,
        event: str,
        pipeline: str,
        target_arn: str,
        region_name: str | None = None,
        aws_conn_id: str | None = "aws_default",
        superseding_task_ids: list[str] | None = None,
        console_links: list[str] | None = None,
        stages: dict[str, list[str]] | None = None,
        at_run_end: bool = False,
        **kwargs: Any,
    ):
        if event not in messages.EVENTS:
            raise ValueError(f"unknown notification event {event!r}; known: {', '.join(messages.EVENTS)}")
        super().__init__(aws_conn_id=aws_conn_id, target_arn=target_arn, message="", region_name=region_name, **kwargs)
        self.event = event
        self.pipeline = pipeline
        # pipeline-failed: approvals and stage doors (Enter) at which a newer run may supersede this one,
        # which ends it failed in Airflow (then it is not reported as failed).
        self.superseding_task_ids = list(superseding_task_ids or [])
        # The failed task's console links (see console_links), for a trigger, which has no operator to
        # read them from; None: read them from the callback context's task.
        self.console_links = console_links
        # stage-started / stage-succeeded: the stage reported (its group id) with its actions' task ids.
        # at_run_end (stage-succeeded as the run's success callback): every stage, of which the run's last
        # is reported, or the stage a rollback run runs.
        self.stages = {stage: list(task_ids) for stage, task_ids in (stages or {}).items()}
        self.at_run_end = at_run_end

    def build(self, context: Any) -> tuple[str, dict[str, Any]]:
        """Subject and message for this event, from the callback context."""
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "")
        ti = context.get("ti") or context.get("task_instance")
        task_id = getattr(ti, "task_id", None)
        stage, action = split_task_id(task_id) if task_id else ("", "")
        region = self.region_name or self.hook.conn_region_name or ""
        links = messages.airflow_links(airflow_base_url(), self.pipeline, run_id, task_id)
        extra: dict[str, Any] = {"airflow-run-link": links["run"]}
        # A task ended by its trigger passes no exception: its reason is in its XCom.
        error = context.get("exception") or failure_reason(ti) or context.get("reason")

        if self.event.startswith("pipeline-"):
            state = self.event.removeprefix("pipeline-").upper()
            if self.event == "pipeline-stopped":
                extra["stop-execution-trigger"] = {"abandon": False}  # stopped and waited for (the API said who)
            if self.event == "pipeline-failed" and task_id:
                extra.update({"failed-stage": stage, "failed-action": action, "airflow-log-link": links["task"]})
            if error:
                extra["reason"] = str(error)
            extra.update(execution_type(getattr(context.get("dag_run"), "conf", None)))
            event = messages.state_change_event(
                level="pipeline", pipeline=self.pipeline, execution_id=run_id, state=state, region=region, extra=extra
            )
            where = f" at {stage}.{action}" if self.event == "pipeline-failed" and task_id else ""
            return f"{state}: pipeline {self.pipeline}{where} (run {run_id})", event

        level = "stage" if self.event == "stage-failed" else "action"
        extra.update({"airflow-log-link": links.get("task", links["run"])})
        if error:
            extra["error-summary"] = str(error)[:2000]
        links = self.console_links
        if links is None:
            links = console_links(context.get("task") or getattr(ti, "task", None))
        if console := _console_link(ti, links):
            extra["aws-console-link"] = console
        event = messages.state_change_event(
            level=level,
            pipeline=self.pipeline,
            execution_id=run_id,
            state="FAILED",
            region=region,
            stage=stage,
            action=action if level == "action" else None,
            extra=extra,
        )
        what = f"stage {stage}" if level == "stage" else f"action {stage}.{action}"
        return f"FAILED: {what} of pipeline {self.pipeline} (run {run_id})", event

    def to_dict(self) -> dict[str, Any]:
        """The constructor's arguments: a trigger rebuilds the notifier from them."""
        return {
            "event": self.event,
            "pipeline": self.pipeline,
            "target_arn": self.target_arn,
            "region_name": self.region_name,
            "aws_conn_id": self.aws_conn_id,
            "superseding_task_ids": self.superseding_task_ids,
            "console_links": self.console_links,
            "stages": self.stages,
            "at_run_end": self.at_run_end,
        }

    def notify(self, context: Any) -> None:
        if self.event in LIFECYCLE_EVENTS:
            self._notify_lifecycle(context)
            return
        if self.event in FAILURE_EVENTS and self._published_by_trigger(context, FAILURE_NOTICES_XCOM_KEY):
            log.info("Not publishing %s: the trigger that failed the task published it", self.event)
            return
        error = context.get("exception")
        if self.event in ("action-failed", "stage-failed") and (is_superseded(error) or self._task_superseded(context)):
            log.info("Not publishing %s: the run was superseded (%s)", self.event, error or "approval superseded")
            return
        if self.event == "pipeline-failed" and (newer := self._superseded_by(context)):
            log.info("Not publishing pipeline-failed: the run was superseded by run %s", newer)
            return
        if self.event in ("pipeline-failed", "pipeline-stopped"):
            # One of the two, by how the run ended: stopped and waited for, or failed.
            stopped = stopped_and_waited(context)
            if stopped != (self.event == "pipeline-stopped"):
                log.info("Not publishing %s: the run %s", self.event, "was stopped" if stopped else "failed")
                return
        subject, message = self.build(context)
        attributes = {"event": self.event, "pipeline": self.pipeline}
        if self.event == "pipeline-started":
            # A task callback in the worker: on_execute_callback runs on every try and again on every
            # resumption after a deferral; the run started once.
            publish_once(context, self.event, self.hook, self.target_arn, subject, message, attributes)
        else:
            publish(self.hook, self.target_arn, subject, message, attributes)

    def _published_by_trigger(self, context: Any, key: str) -> bool:
        sent = own_xcom(context.get("ti") or context.get("task_instance"), key)
        return isinstance(sent, dict) and self.event in sent

    # ---- stages and actions starting and succeeding ------------------------------------------------
    def _notify_lifecycle(self, context: Any) -> None:
        """Publish a stage or action lifecycle event, once per occasion.

        In a task's on_execute_callback (the started events, and stage-succeeded of the stage before) Airflow
        runs the callback on every try and again on every resumption after a deferral: the event is recorded
        in the task's state store under the task's round (`max_tries`, raised by each clear: a stage retried
        starts again). action-succeeded runs once per successful try (on_success_callback in the worker,
        or the trigger that ended the task); the run's success callback once per run end.
        """
        if self.event == "action-succeeded":
            if self._published_by_trigger(context, SUCCESS_NOTICES_XCOM_KEY):
                log.info("Not publishing %s: the trigger that ended the task published it", self.event)
                return
            subject, message = self.build_lifecycle(context)
            publish(self.hook, self.target_arn, subject, message, self._attributes())
            return
        stage = self._reported_stage(context)
        subject, message = self.build_lifecycle(context, stage)
        if self.at_run_end:
            if stage is not None and self._stage_succeeded(context, stage):
                publish(self.hook, self.target_arn, subject, message, self._attributes())
            return
        ident = f"{self.event}:{stage}@{_round(context)}" if stage else f"{self.event}@{_round(context)}"
        if self.event == "stage-succeeded":
            if ident in SentLog(context):  # a resumption: the states need no second read
                log.info("Notification %s was already published for this task instance", ident)
                return
            if not self._stage_succeeded(context, stage):
                log.info("Not publishing %s for stage %s: it was skipped", self.event, stage)
                return
        publish_once(context, ident, self.hook, self.target_arn, subject, message, self._attributes())

    def _attributes(self) -> dict[str, str]:
        return {"event": self.event, "pipeline": self.pipeline}

    def _reported_stage(self, context: Any) -> str | None:
        """The stage a stage event reports: its own, or at the run's end the last stage (a rollback run's stage)."""
        if not self.at_run_end:
            return next(iter(self.stages), None)
        rollback = execution_type(getattr(context.get("dag_run"), "conf", None)).get("rollback-metadata")
        if rollback and rollback.get("stage") in self.stages:
            return rollback["stage"]
        return next(reversed(self.stages), None)

    def _stage_succeeded(self, context: Any, stage: str) -> bool:
        """Whether the tasks `stages` names for `stage` all succeeded in this run (not skipped by its entry
        conditions or by a rollback run); one read of their states. Unreadable states count as succeeded: the
        stage's successor only runs when nothing before it failed."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        task_ids = self.stages.get(stage) or []
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(ti, "dag_id", None) or self.pipeline
        run_id = context.get("run_id") or getattr(ti, "run_id", None) or getattr(context.get("dag_run"), "run_id", "")
        try:
            states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=task_ids, run_ids=[run_id])
        except Exception:  # noqa: BLE001 - a notification never changes the outcome
            log.warning("Could not read the states of stage %s; reporting it as succeeded", stage, exc_info=True)
            return True
        states = states.get(run_id, {})
        return bool(task_ids) and all(_state_name(states.get(task_id)) == "success" for task_id in task_ids)

    def build_lifecycle(self, context: Any, stage: str | None = None) -> tuple[str, dict[str, Any]]:
        """Subject and message of a stage or action lifecycle event."""
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "")
        ti = context.get("ti") or context.get("task_instance")
        task_id = getattr(ti, "task_id", None)
        level, _, what = self.event.partition("-")
        state = what.upper()
        region = self.region_name or self.hook.conn_region_name or ""
        if level == "stage":
            action = None
            links = messages.airflow_links(airflow_base_url(), self.pipeline, run_id)
            extra, what = {"airflow-run-link": links["run"]}, f"stage {stage}"
        else:
            stage, action = split_task_id(task_id) if task_id else ("", "")
            links = messages.airflow_links(airflow_base_url(), self.pipeline, run_id, task_id)
            extra, what = messages.task_links(links), f"action {stage}.{action}"
        event = messages.state_change_event(
            level=level,
            pipeline=self.pipeline,
            execution_id=run_id,
            state=state,
            region=region,
            stage=stage,
            action=action,
            extra=extra,
        )
        return f"{state}: {what} of pipeline {self.pipeline} (run {run_id})", event

    @staticmethod
    def _task_superseded(context: Any) -> bool:
        """Whether the failed task is an approval that its trigger ended as superseded."""
        decision = own_xcom(context.get("ti") or context.get("task_instance"), DECISION_XCOM_KEY)
        return isinstance(decision, dict) and decision.get("Outcome") == "Superseded"

    def _superseded_by(self, context: Any) -> str | None:
        """The newer run that superseded this one at an approval or a stage's door, if that is how it ended."""
        ti = context.get("ti") or context.get("task_instance")
        if ti is None or not hasattr(ti, "xcom_pull"):
            return None
        for task_id in self.superseding_task_ids:
            try:
                decision = ti.xcom_pull(task_ids=task_id, key=DECISION_XCOM_KEY)
            except Exception:  # noqa: BLE001 - at worst the run is reported as failed
                log.warning("Could not read how %s ended", task_id, exc_info=True)
                continue
            if isinstance(decision, dict) and decision.get("Outcome") == "Superseded":
                return decision.get("SupersededBy") or "?"
        return None


def stopped_and_waited(context: Any) -> bool:
    """Whether the run that ended failed was stopped and waited for (ui/operations.py `stop_and_wait`): its
    tasks not started then ended upstream_failed, and no task failed. Nothing else ends tasks upstream_failed
    without a failed one upstream; a run stopped (abandoned) is marked failed and gets no callback."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(ti, "dag_id", None)
    run_id = context.get("run_id") or getattr(ti, "run_id", None)
    if not dag_id or not run_id:
        return False
    try:
        states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id]).get(run_id, {})
    except Exception:  # noqa: BLE001 - then it is reported as the failure it looks like
        log.warning("Could not read the run's task states; reporting it as failed", exc_info=True)
        return False
    ended = {_state_name(state) for state in states.values()}
    return "upstream_failed" in ended and "failed" not in ended


def _round(context: Any) -> int:
    """The task instance's round: its `max_tries`, the same for every try and resumption, raised by a clear."""
    ti = context.get("ti") or context.get("task_instance")
    try:
        return int(getattr(ti, "max_tries", None) or 0)
    except (TypeError, ValueError):
        return 0


def _state_name(state: Any) -> str | None:
    return None if state is None else str(getattr(state, "value", state))


def console_links(task: Any) -> list[str]:
    """The AWS console links an operator declares (its `operator_extra_links`), in its order, as
    "module:Class" paths a trigger's notice can carry."""
    links = getattr(task, "operator_extra_links", None) or ()
    return [f"{type(link).__module__}:{type(link).__qualname__}" for link in links if isinstance(link, BaseAwsLink)]


def _console_link(ti: Any, links: list[str]) -> str | None:
    """The failed action's AWS console link: the first of `links` whose data the task stored when it started."""
    if ti is None or not hasattr(ti, "xcom_pull"):
        return None
    for path in links:
        try:
            module, _, name = path.partition(":")
            link = getattr(importlib.import_module(module), name)()
            value = ti.xcom_pull(task_ids=ti.task_id, key=link.key)
        except Exception:  # noqa: BLE001 - links only enrich the message
            continue
        if isinstance(value, dict) and (url := link.format_link(**value)):
            return url
    return None


def failure_notices(operator: Any, context: Any) -> list[dict[str, Any]] | None:
    """The action-failed / stage-failed notifiers of a task about to defer, for its trigger to publish
    should it fail the task (only when this try is the last: a retry is no failure to announce)."""
    callbacks = getattr(operator, "on_failure_callback", None) or []
    callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    links = console_links(operator)
    notices = [
        {**c.to_dict(), "console_links": links}
        for c in callbacks
        if isinstance(c, PipelineEventNotifier) and c.event in FAILURE_EVENTS
    ]
    ti = context.get("ti")
    if not notices or ti is None:
        return None
    retries_left = bool(getattr(operator, "retries", 0)) and (
        (getattr(ti, "try_number", None) or 1) <= (getattr(ti, "max_tries", None) or 0)
    )
    return None if retries_left else notices


def success_notices(operator: Any) -> list[dict[str, Any]] | None:
    """The action-succeeded notifier of a task about to defer, for its trigger to publish should it end the
    task successfully (Airflow 3.3.2 runs no success callback of a task its trigger ends)."""
    callbacks = getattr(operator, "on_success_callback", None) or []
    callbacks = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    notices = [c.to_dict() for c in callbacks if isinstance(c, PipelineEventNotifier) and c.event in SUCCESS_EVENTS]
    return notices or None


class _TriggerTaskInstance:
    """What the notifier reads of a task instance, for a trigger (XCom through the Task SDK)."""

    def __init__(self, ti: Any):
        self.dag_id, self.task_id, self.run_id = ti.dag_id, ti.task_id, ti.run_id
        self.map_index = -1 if getattr(ti, "map_index", None) is None else ti.map_index

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_one(key=key, dag_id=self.dag_id, task_id=task_ids, run_id=self.run_id, map_index=self.map_index)

    def xcom_push(self, key: str, value: Any) -> None:
        from airflow.sdk.execution_time.xcom import XCom

        XCom.set(key, value, dag_id=self.dag_id, task_id=self.task_id, run_id=self.run_id, map_index=self.map_index)


def announce_failure(notices: list[dict[str, Any]] | None, ti: Any, reason: str) -> None:
    """In a trigger about to fail its task: publish the task's failure events and record that it did.

    Airflow would run the task's failure callbacks in the dag-processor, which loses the ones it has
    taken when it dies; publishing here, before the task fails, loses none, and the record (XCom
    `failure_notices`) keeps the callbacks from publishing them again. A trigger run again after a
    crash skips what the record already holds.
    """
    _announce(notices, ti, FAILURE_NOTICES_XCOM_KEY, {"exception": reason})


def announce_success(notices: list[dict[str, Any]] | None, ti: Any) -> None:
    """In a trigger about to end its task successfully (its outputs written): publish the task's success
    events and record them (XCom `success_notices`), as `announce_failure` does for failures."""
    _announce(notices, ti, SUCCESS_NOTICES_XCOM_KEY, {})


def _announce(notices: list[dict[str, Any]] | None, ti: Any, key: str, extra: dict[str, Any]) -> None:
    if not notices or ti is None:
        return
    task = _TriggerTaskInstance(ti)
    try:
        sent = dict(task.xcom_pull(task.task_id, key) or {})
    except Exception:  # noqa: BLE001 - then the callbacks publish
        log.warning(
            "Could not read which events were published (%s); leaving them to the callbacks", key, exc_info=True
        )
        return
    context = {"run_id": task.run_id, "ti": task, **extra}
    for notice in notices:
        notifier = PipelineEventNotifier(**notice)
        if notifier.event in sent:
            continue
        notifier.notify(context)
        sent[notifier.event] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            task.xcom_push(key, sent)
        except Exception:  # noqa: BLE001 - at worst the callback publishes it again
            log.warning("Could not record that %s was published", notifier.event, exc_info=True)
