"""The compiler: one validated Pipeline model in, one Airflow DAG out.

- dag_id = pipeline name; a TaskGroup per stage, stages chained in order;
- inside a stage, actions with equal run_order run in parallel and the next run_order waits for all
  of them (Airflow's default all_success rule: a failed action stops its stage and everything after
  it, while actions already running beside it finish first, as in CodePipeline);
- pipeline variables become DAG params (overridable at trigger time, validated by Airflow);
- `#{Namespace.Var}` references become Jinja expressions resolved at run time from the producing
  action's outputs (its XCom return value), `#{variables.NAME}` from params and
  `#{codepipeline.PipelineExecutionId}` from the run id;
- execution modes: runs overlap in every mode (up to RELEASE_ORCHESTRATOR_PARALLEL_RUNS); in QUEUED and
  SUPERSEDED each stage starts with an `Enter` task that lets one run into the stage at a time
  (stages/entry.py: first in, first out, or the newest waiting run superseding older ones); PARALLEL
  runs stay independent. Approvals of a pipeline with superseding on (SUPERSEDED by default,
  `supersede_approvals`) end an older run's wait when a newer run reaches them or waits to enter
  their stage (see docs/approvals.md).
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from itertools import groupby
from typing import Any

from release_orchestrator import settings
from release_orchestrator.gate.policy import ApprovalsRequired
from release_orchestrator.notifications.messages import APPROVAL_EVENTS
from release_orchestrator.pipeline.action_types import ACTION_TYPES
from release_orchestrator.pipeline.artifacts import artifact_kwargs
from release_orchestrator.pipeline.conditions import (
    CONDITIONS_TASK,
    SUCCESS_CONDITIONS_TASK,
    EntryCondition,
    failure_rule,
    on_failure_result,
    parse_entry_condition,
    rolls_back,
    success_condition,
)
from release_orchestrator.pipeline.files import is_file_path, spec_file, spec_folder
from release_orchestrator.pipeline.model import PREFLIGHT_GROUP, Action, Pipeline, Stage
from release_orchestrator.pipeline.syntax import REFERENCE_RE, airflow_key
from release_orchestrator.stages.entry import ENTER_TASK, Door
from release_orchestrator.stages.guard import StageHeld
from release_orchestrator.stages.rollback import ROLLBACK_TASK, RollbackScope

log = logging.getLogger(__name__)
SOURCE_REVISION_PARAM = "source_revision"
# Execution modes in which a stage holds one run at a time (an Enter task at each stage's door).
ONE_RUN_PER_STAGE_MODES = ("QUEUED", "SUPERSEDED")
# Git sources: they record the commits since the last release, which approvals after them list.
GIT_SOURCE_TYPES = ("source.github", "source.codecommit")
# Events an approval action publishes itself (the others are DAG or task callbacks).
TAG = "release-pipeline"


class UnresolvedReference(LookupError):
    pass


def task_id_of(stage_name: str, action_name: str) -> str:
    return f"{airflow_key(stage_name)}.{airflow_key(action_name)}"


# ---- run-time resolution of references ------------------------------------------------------
def release_output(ti: Any, task_id: str, namespace: str, variable: str) -> Any:
    """Value of `#{namespace.variable}`: an output of the action that owns the namespace (in a rollback
    run, of the run it rolls back to when the action is in another stage: stages/rollback.py)."""
    from release_orchestrator.stages.rollback import results_run

    run_id = results_run(ti.get_template_context(), task_id)
    outputs = ti.xcom_pull(task_ids=task_id, run_id=run_id)
    if not isinstance(outputs, dict):
        where = "this run" if run_id == ti.run_id else f"run {run_id}, which this run rolls back to"
        raise UnresolvedReference(f"#{{{namespace}.{variable}}}: action {task_id} recorded no outputs in {where}")
    if variable not in outputs:
        raise UnresolvedReference(
            f"#{{{namespace}.{variable}}}: action {task_id} has no output {variable!r}; "
            f"it has: {', '.join(sorted(outputs)) or 'none'}"
        )
    return outputs[variable]


# Spec text is data: Airflow renders every string of a template field with Jinja, so each piece of
# literal text is escaped to render as itself. Jinja only leaves plain text on a '{' ('{{', '{%', '{#'),
# so each '{' becomes the expression {{ '{' }}; besides, Jinja folds '\r' into '\n' and drops one
# trailing newline, so those are written as expressions too. Text without them is left as it is (a
# bucket name stays a bucket name in the task's view). Escaping keeps the values plain strings,
# which every operator, the approval form and the serialized DAG take as they are, and leaves the
# references the same Jinja expressions as before; a value they produce (a param given at trigger
# time, an output) is inserted, never rendered again.
_JINJA_LITERALS = {"{": "{{ '{' }}", "\r": "{{ '\\r' }}"}
_JINJA_SPECIAL_RE = re.compile(r"[{\r]")
_TRAILING_NEWLINE = "{{ '\\n' }}"


def jinja_literal(text: str) -> str:
    """`text` as a Jinja template that renders to exactly `text`."""
    escaped = _JINJA_SPECIAL_RE.sub(lambda m: _JINJA_LITERALS[m.group()], text)
    return escaped[:-1] + _TRAILING_NEWLINE if escaped.endswith("\n") else escaped


def _literal(value: Any) -> Any:
    return jinja_literal(value) if isinstance(value, str) else value


def _reference_jinja(namespace: str, variable: str, namespaces: dict[str, str]) -> str:
    if namespace == "variables":
        return f"{{{{ params[{variable!r}] }}}}"
    if namespace == "codepipeline":
        return "{{ run_id }}"
    return f"{{{{ release_output(ti, {namespaces[namespace]!r}, {namespace!r}, {variable!r}) }}}}"


def to_jinja(value: Any, namespaces: dict[str, str]) -> Any:
    """A spec value (nested values too) as the Jinja Airflow renders at run time: #{...} references
    become lookups, every other character renders as itself (jinja_literal). Mapping keys are not
    rendered by Airflow, so they stay as they are."""
    if isinstance(value, str):
        parts, last = [], 0
        for match in REFERENCE_RE.finditer(value):
            parts.append(jinja_literal(value[last : match.start()]))
            parts.append(_reference_jinja(*match.groups(), namespaces))
            last = match.end()
        parts.append(jinja_literal(value[last:]))
        return "".join(parts)
    if isinstance(value, dict):
        return {key: to_jinja(item, namespaces) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):  # Airflow renders the items of each
        items = [to_jinja(item, namespaces) for item in value]
        return items if isinstance(value, list) else type(value)(items)
    return value


def _configuration(pipeline: Pipeline, action: Action, namespaces: dict[str, str]) -> dict[str, Any]:
    action_type = ACTION_TYPES[action.type]
    config = action_type.with_defaults(action.configuration)
    for key in action_type.file_keys:
        if is_file_path(config.get(key)):
            # Checked again here and by the worker before it reads (validate refused it already).
            config[key] = str(spec_file(config[key], pipeline.source_file))
    return to_jinja(config, namespaces)


# ---- the DAG ------------------------------------------------------------------------------------
def doc_md(pipeline: Pipeline) -> str:
    lines = [
        pipeline.description or f"Release pipeline `{pipeline.name}`.",
        "",
        f"Execution mode: **{pipeline.execution_mode}**"
        + (" · approvals superseded by newer runs" if supersedes_approvals(pipeline) else "")
        + (f" · schedule `{pipeline.schedule}`" if pipeline.schedule else ""),
        "",
        "| stage | run order | action | type | namespace |",
        "|---|---|---|---|---|",
    ]
    for stage in pipeline.stages:
        for action in sorted(stage.actions, key=lambda a: a.run_order):
            lines.append(
                f"| {stage.name} | {action.run_order} | {action.name} | `{action.type}` | {action.namespace or ''} |"
            )
    if pipeline.source_file:
        lines += ["", f"Spec: `{pipeline.source_file}`"]
    return "\n".join(lines)


def _notifiers(pipeline: Pipeline) -> dict[str, Any]:
    """One notifier per wanted event, keyed by event name."""
    if not pipeline.notifications:
        return {}
    from release_orchestrator.notifications.notifier import PipelineEventNotifier

    wanted = pipeline.notifications.events
    return {
        event: PipelineEventNotifier(
            event=event,
            pipeline=pipeline.name,
            target_arn=pipeline.notifications.topic_arn,
            aws_conn_id=pipeline.notifications.aws_conn_id or pipeline.aws_conn_id,
            region_name=pipeline.region,
        )
        for event in wanted
        if event not in APPROVAL_EVENTS
    }


def supersedes_approvals(pipeline: Pipeline) -> bool:
    """Whether a newer run reaching an approval ends an older run's wait there."""
    if pipeline.supersede_approvals is not None:
        return bool(pipeline.supersede_approvals)
    return pipeline.execution_mode == "SUPERSEDED"


def _approval_notifications(pipeline: Pipeline) -> dict[str, Any] | None:
    """Where approvals publish their decisions and superseding (the pipeline's notifications)."""
    n = pipeline.notifications
    if not n or not any(event in n.events for event in APPROVAL_EVENTS[1:]):
        return None
    return {
        "pipeline": pipeline.name,
        "topic_arn": n.topic_arn,
        "events": [event for event in n.events if event in APPROVAL_EVENTS[1:]],
        "aws_conn_id": n.aws_conn_id or pipeline.aws_conn_id,
        "region_name": pipeline.region,
    }


def _approval_task_ids(pipeline: Pipeline) -> list[str]:
    return [
        task_id_of(stage.name, action.name)
        for stage in pipeline.stages
        for action in stage.actions
        if action.type == "approval.manual"
    ]


def _dag_callbacks(pipeline: Pipeline, notifiers: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """on_success_callback and on_failure_callback of the DAG."""
    on_success = [notifiers["pipeline-succeeded"]] if "pipeline-succeeded" in notifiers else []
    # pipeline-stopped: a run stopped and waiting ends failed with nothing failed (notifier.py).
    on_failure = [notifiers[e] for e in ("pipeline-failed", "pipeline-stopped") if e in notifiers]
    approvals = _approval_task_ids(pipeline)
    config = _approval_notifications(pipeline)
    if approvals and config and {"approval-approved", "approval-rejected"} & set(config["events"]):
        from release_orchestrator.notifications.approvals import ApprovalDecisionNotifier, ApprovalNotifications

        # Decisions made by marking the task that the trigger could not announce, when the run ends.
        catch_up = ApprovalDecisionNotifier(ApprovalNotifications.from_dict(config), approvals)
        on_success.append(catch_up)
        on_failure.append(catch_up)
    return on_success, on_failure


def build_dag(pipeline: Pipeline):
    """Compile one (validated) pipeline into an Airflow DAG."""
    from airflow.sdk import DAG, Param, TaskGroup, TriggerRule

    from release_orchestrator.events.assets import pipeline_schedule

    params: dict[str, Any] = {
        variable.name: Param(
            variable.default,
            type=["string", "null"] if variable.default is None else "string",
            description=variable.description or f"pipeline variable {variable.name}",
        )
        for variable in pipeline.variables
    }
    params[SOURCE_REVISION_PARAM] = Param(
        None,
        type=["null", "string"],
        description="Release this revision instead of the one the trigger carries: "
        "a commit id, an image digest or an S3 object version.",
    )
    notifiers = _notifiers(pipeline)
    if "pipeline-failed" in notifiers:
        # A run superseded at an approval or a stage's door ends failed in Airflow, but is reported as superseded.
        doors = [task_id_of(stage.name, ENTER_TASK) for stage in pipeline.stages]
        notifiers["pipeline-failed"].superseding_task_ids = _approval_task_ids(pipeline) + (
            doors if pipeline.execution_mode in ONE_RUN_PER_STAGE_MODES else []
        )
    on_success, on_failure = _dag_callbacks(pipeline, notifiers)
    namespaces = {
        action.namespace: task_id_of(stage.name, action.name)
        for stage in pipeline.stages
        for action in stage.actions
        if action.namespace
    }
    dag = DAG(
        dag_id=airflow_key(pipeline.name),
        description=(pipeline.description or "")[:200] or None,
        schedule=pipeline_schedule(pipeline),  # cron, the assets event-driven triggers watch, or both
        catchup=False,
        params=params,
        tags=[TAG, *pipeline.tags],
        max_active_runs=settings.PARALLEL_RUNS.get(),
        doc_md=doc_md(pipeline),
        user_defined_macros={"release_output": release_output},
        on_success_callback=on_success or None,
        on_failure_callback=on_failure or None,
        default_args={"retries": 0},
        # The factory assigns DAGs to module globals itself; auto-registration would also register
        # DAGs built anywhere else (tests, benchmarks, the CLI) in whatever file built them.
        auto_register=False,
    )
    task_failure_callbacks = [notifiers[e] for e in ("action-failed", "stage-failed") if e in notifiers]
    first_task = True
    previous_tasks: list[Any] = []  # what the next stage's first actions wait for
    previous_enter = None
    doors = pipeline.execution_mode in ONE_RUN_PER_STAGE_MODES
    approvals_before: list[str] = []  # every action after an approval runs only if it was approved
    with dag:
        if pipeline.preflight:  # the first task of every run; the first stage waits for it
            previous_tasks = [_preflight_group(pipeline, notifiers, task_failure_callbacks)]
            first_task = False
        for index, stage in enumerate(pipeline.stages):
            # A stage's first tasks run unless something before them failed: a stage skipped before them
            # (its entry condition's SKIP, or a rollback run's other stages) skips only its own tasks.
            entering = index > 0
            with TaskGroup(group_id=airflow_key(stage.name), tooltip=f"stage {stage.name}"):
                if doors:
                    # The next stage's Enter waits for this one only: the run reserves it while still
                    # here (stages/entry.py), so its actions start as soon as this stage ends.
                    enter = _enter_task(pipeline, stage, entering)
                    for upstream in [previous_enter] if previous_enter is not None else previous_tasks:
                        upstream >> enter  # the first door after Preflight.Check: nothing runs before it
                    previous_enter = enter
                    previous_tasks = [*previous_tasks, enter]
                condition = parse_entry_condition(stage.before_entry)[0] if stage.before_entry is not None else None
                if condition is not None:
                    conditions = _conditions_task(
                        pipeline, stage, condition, namespaces, task_failure_callbacks, entering
                    )
                    entering = False
                    for upstream in previous_tasks:
                        upstream >> conditions
                    previous_tasks = [conditions]
                stage_tasks = []
                ordered = sorted(stage.actions, key=lambda a: a.run_order)
                for _, same_order in groupby(ordered, key=lambda a: a.run_order):
                    tasks = []
                    approvals_here = []
                    for action in same_order:
                        task = _build_task(
                            pipeline,
                            stage,
                            action,
                            namespaces,
                            notifiers,
                            task_failure_callbacks,
                            started=first_task,
                            approvals_before=approvals_before,
                        )
                        if action.type == "approval.manual":
                            approvals_here.append(task.task_id)
                        if entering:
                            task.trigger_rule = TriggerRule.NONE_FAILED
                        first_task = False
                        tasks.append(task)
                    entering = False
                    approvals_before = approvals_before + approvals_here
                    for upstream in previous_tasks:
                        upstream >> tasks
                    previous_tasks = tasks
                    stage_tasks += tasks
                if (success := success_condition(stage)) is not None:
                    check = _success_conditions_task(pipeline, stage, success, namespaces, task_failure_callbacks)
                    for upstream in previous_tasks:
                        upstream >> check
                    previous_tasks = [check]
                    stage_tasks.append(check)
                if rolls_back(stage):
                    # A side branch: the next stage never waits for it.
                    stage_tasks >> _rollback_task(pipeline, stage, task_failure_callbacks)
    if notifiers:
        from release_orchestrator.notifications.lifecycle import attach_lifecycle_notifiers

        attach_lifecycle_notifiers(dag, pipeline, notifiers)  # stages and actions starting and succeeding
    return dag


def _git_sources_before(pipeline: Pipeline, stage: Stage) -> list[str]:
    """The git sources of the stages before `stage`: an approval lists the commits they release."""
    earlier = pipeline.stages[: pipeline.stages.index(stage)]
    return [task_id_of(s.name, a.name) for s in earlier for a in s.actions if a.type in GIT_SOURCE_TYPES]


def _first_enter_task_id(pipeline: Pipeline) -> str:
    return task_id_of(pipeline.stages[0].name, ENTER_TASK)


class AllChecks:
    """`pre_execute` running several checks in order (each raises to stop the task)."""

    def __init__(self, checks: list[Any]):
        self.checks = list(checks)

    def __call__(self, context: Any) -> None:
        for check in self.checks:
            check(context)


def _action_task_ids(stage: Stage) -> list[str]:
    return [task_id_of(stage.name, action.name) for action in stage.actions]


def _success_task_ids(stage: Stage) -> list[str]:
    """What succeeded in a run in which the stage succeeded: its actions, and its success conditions."""
    check = [task_id_of(stage.name, SUCCESS_CONDITIONS_TASK)] if stage.on_success is not None else []
    return _action_task_ids(stage) + check


def _rollback_cause_task_ids(stage: Stage) -> list[str]:
    """The tasks whose failure rolls the stage back: its actions (on_failure ROLLBACK), its success
    conditions (on_success ROLLBACK)."""
    success = success_condition(stage)
    actions = _action_task_ids(stage) if on_failure_result(stage) == "ROLLBACK" else []
    check = [task_id_of(stage.name, SUCCESS_CONDITIONS_TASK)] if success and success.result == "ROLLBACK" else []
    return actions + check


def _door(pipeline: Pipeline, stage: Stage) -> Door:
    # A run waiting for the stage's deployment window, checking its conditions or watching its alarms
    # holds the stage too; so does a failed run until its automatic rollback is done
    # (operators/stage_rollback.py).
    checks = (task_id_of(stage.name, CONDITIONS_TASK),) if stage.before_entry is not None else ()
    rollback = (task_id_of(stage.name, ROLLBACK_TASK),) if rolls_back(stage) else ()
    return Door(
        stage.name,
        task_id_of(stage.name, ENTER_TASK),
        checks + tuple(_success_task_ids(stage)) + rollback,
        pipeline.execution_mode,
    )


def _rollback_task(pipeline: Pipeline, stage: Stage, failure_callbacks: list[Any]):
    """The stage's Rollback task (operators/stage_rollback.py): on_failure or on_success ROLLBACK."""
    from release_orchestrator.operators.stage_rollback import StageRollbackOperator

    kwargs: dict[str, Any] = {"on_failure_callback": list(failure_callbacks)} if failure_callbacks else {}
    if poll_interval := settings.POLL_INTERVAL.get():
        kwargs["check_interval"] = poll_interval
    return StageRollbackOperator(
        task_id=ROLLBACK_TASK,
        stage=stage.name,
        stage_group=airflow_key(stage.name),
        action_task_ids=_action_task_ids(stage),
        success_task_ids=_success_task_ids(stage),
        cause_task_ids=_rollback_cause_task_ids(stage),
        doc_md=f"The automatic rollback of stage **{stage.name}**: when "
        + " or ".join(_rollback_cause_task_ids(stage))
        + " failed, a rollback run deploys the stage of the latest run in which it succeeded; this run holds the "
        "stage until that is done.",
        **kwargs,
    )


def _conditions_task(
    pipeline: Pipeline,
    stage: Stage,
    condition: EntryCondition,
    namespaces: dict[str, str],
    failure_callbacks: list[Any],
    entering: bool,
):
    """The stage's Conditions task (operators/stage_conditions.py): its entry conditions, before its actions."""
    from dataclasses import asdict

    from airflow.sdk import TriggerRule

    from release_orchestrator.operators.stage_conditions import StageConditionsOperator

    rules = [to_jinja(asdict(rule), namespaces) for rule in condition.rules]
    kwargs: dict[str, Any] = {"on_failure_callback": list(failure_callbacks)} if failure_callbacks else {}
    if entering:
        kwargs["trigger_rule"] = TriggerRule.NONE_FAILED
    names = ", ".join(f"{rule.name} ({rule.type})" for rule in condition.rules)
    return StageConditionsOperator(
        task_id=CONDITIONS_TASK,
        stage=stage.name,
        result=condition.result,
        rules=rules,
        aws_conn_id=_literal(pipeline.aws_conn_id),
        region_name=_literal(pipeline.region),
        doc_md=f"The entry conditions of stage **{stage.name}**: {names}; when not met: {condition.result}.",
        pre_execute=RollbackScope(airflow_key(stage.name), _success_task_ids(stage)),
        **kwargs,
    )


def _success_conditions_task(
    pipeline: Pipeline,
    stage: Stage,
    condition: EntryCondition,
    namespaces: dict[str, str],
    failure_callbacks: list[Any],
):
    """The stage's SuccessConditions task (operators/stage_conditions.py): after its actions, before the next stage."""
    from dataclasses import asdict

    from release_orchestrator.operators.stage_conditions import StageSuccessConditionsOperator

    kwargs: dict[str, Any] = {"on_failure_callback": list(failure_callbacks)} if failure_callbacks else {}
    if poll_interval := settings.POLL_INTERVAL.get():
        kwargs["check_interval"] = poll_interval
    names = ", ".join(f"{rule.name} ({rule.type})" for rule in condition.rules)
    return StageSuccessConditionsOperator(
        task_id=SUCCESS_CONDITIONS_TASK,
        stage=stage.name,
        result=condition.result,
        rules=[to_jinja(asdict(rule), namespaces) for rule in condition.rules],
        aws_conn_id=_literal(pipeline.aws_conn_id),
        region_name=_literal(pipeline.region),
        doc_md=f"The success conditions of stage **{stage.name}**: {names}; when not met: {condition.result}.",
        pre_execute=RollbackScope(airflow_key(stage.name), _success_task_ids(stage)),
        **kwargs,
    )


def _enter_task(pipeline: Pipeline, stage: Stage, entering: bool):
    """The stage's Enter task (operators/stage_entry.py): one run in the stage at a time."""
    from airflow.sdk import TriggerRule

    from release_orchestrator.operators.stage_entry import StageEntryOperator

    kwargs: dict[str, Any] = {"trigger_rule": TriggerRule.NONE_FAILED} if entering else {}
    if poll_interval := settings.POLL_INTERVAL.get():
        kwargs["check_interval"] = poll_interval
    return StageEntryOperator(
        task_id=ENTER_TASK,
        stage=stage.name,
        action_task_ids=list(_door(pipeline, stage).action_task_ids),
        first_enter_task_id=_first_enter_task_id(pipeline),
        mode=pipeline.execution_mode,
        notifications=_approval_notifications(pipeline),
        doc_md=f"The door of stage **{stage.name}**: one run in the stage at a time "
        f"({pipeline.execution_mode}); a run waits here, without a worker slot, while another holds it.",
        **kwargs,
    )


def _preflight_group(pipeline: Pipeline, notifiers: dict[str, Any], failure_callbacks: list[Any]):
    """The Preflight group and its Check task (pipeline/preflight.py, operators/preflight.py)."""
    from dataclasses import asdict

    from airflow.sdk import TaskGroup

    from release_orchestrator.operators.preflight import PreflightOperator
    from release_orchestrator.pipeline.preflight import plan

    kwargs: dict[str, Any] = {"on_failure_callback": list(failure_callbacks)} if failure_callbacks else {}
    if "pipeline-started" in notifiers:
        kwargs["on_execute_callback"] = [notifiers["pipeline-started"]]
    with TaskGroup(group_id=PREFLIGHT_GROUP, tooltip="check the resources the actions name") as group:
        PreflightOperator(task_id="Check", checks=[asdict(check) for check in plan(pipeline)], **kwargs)
    return group


def _build_task(
    pipeline: Pipeline,
    stage: Stage,
    action: Action,
    namespaces: dict[str, str],
    notifiers: dict[str, Any],
    failure_callbacks: list[Any],
    started: bool,
    approvals_before: list[str] = (),
):
    action_type = ACTION_TYPES[action.type]
    operator = action_type.operator_class(action.configuration)
    # The operators' defaults suit real AWS; a local sandbox whose builds take seconds wants shorter.
    poll_interval = settings.POLL_INTERVAL.get()
    kwargs: dict[str, Any] = {**_configuration(pipeline, action, namespaces), **action_type.fixed_kwargs}
    if action_type.file_keys:
        kwargs["spec_folder"] = spec_folder(pipeline.source_file)  # where the worker may read files
    # Spec values outside the configuration that land in template fields are literal text too.
    if action_type.uses_aws:
        kwargs["aws_conn_id"] = _literal(action.aws_conn_id or pipeline.aws_conn_id)
        kwargs["region_name"] = _literal(action.region or pipeline.region)
    if (artifacts := artifact_kwargs(pipeline, action)) is not None:
        kwargs["artifacts"] = artifacts
    if action.type in GIT_SOURCE_TYPES:
        kwargs["release_task_ids"] = [task_id_of(pipeline.stages[-1].name, a.name) for a in pipeline.stages[-1].actions]
    if action.type == "approval.manual":
        if "approval-needed" in (pipeline.notifications.events if pipeline.notifications else []):
            kwargs.setdefault("sns_topic_arn", _literal(pipeline.notifications.topic_arn))
        kwargs["supersede"] = supersedes_approvals(pipeline)
        kwargs["notifications"] = _approval_notifications(pipeline)
        kwargs["release_source_task_ids"] = _git_sources_before(pipeline, stage)
        if pipeline.execution_mode in ONE_RUN_PER_STAGE_MODES:
            kwargs["stage_door"] = {
                "enter_task_id": task_id_of(stage.name, ENTER_TASK),
                "first_enter_task_id": _first_enter_task_id(pipeline),
            }
        if poll_interval:
            kwargs["check_interval"] = poll_interval
    if poll_interval and action_type.polls:
        kwargs["poll_interval"] = poll_interval
    if action.timeout_minutes:
        kwargs["execution_timeout"] = timedelta(minutes=action.timeout_minutes)
    if (on_failure := failure_rule(stage)).result == "RETRY" and action.type != "approval.manual":
        # on_failure RETRY (FAILED_ACTIONS): a failed action runs again at once, in the same run; a rejected
        # approval is a decision, not a failure to retry.
        kwargs.update(retries=on_failure.max_attempts, retry_delay=timedelta(0))
    if failure_callbacks:
        kwargs["on_failure_callback"] = list(failure_callbacks)
    # First: in a rollback run, the other stages' actions skip themselves (stages/rollback.py).
    checks: list[Any] = [RollbackScope(airflow_key(stage.name), _success_task_ids(stage))]
    if approvals_before:
        # Defence in depth behind the api-server's gate (gate/): a decision it did not record stops here.
        checks.append(ApprovalsRequired(list(approvals_before)))
    if pipeline.execution_mode in ONE_RUN_PER_STAGE_MODES:
        # A task cleared by hand cannot take the stage from the run that holds it (stages/guard.py).
        checks.append(StageHeld(_door(pipeline, stage)))
    if checks:
        kwargs["pre_execute"] = checks[0] if len(checks) == 1 else AllChecks(checks)
    if started and "pipeline-started" in notifiers:
        kwargs["on_execute_callback"] = [notifiers["pipeline-started"]]
    kwargs["doc_md"] = f"Action **{action.name}** (`{action.type}`), run order {action.run_order}" + (
        f", namespace `{action.namespace}`" if action.namespace else ""
    )
    return operator(task_id=airflow_key(action.name), **kwargs)


def load_pipelines(directory: str | os.PathLike | list | None = None):
    """Every valid spec of the pipelines directories, and the error of each invalid one."""
    from release_orchestrator.pipeline.loader import load_specs

    if isinstance(directory, str) and os.pathsep in directory:
        directory = [part for part in directory.split(os.pathsep) if part]
    return load_specs(directory or settings.pipelines_dirs())


def build_dags(directory: str | os.PathLike | list | None = None) -> tuple[dict[str, Any], dict[str, Exception]]:
    """Every spec in the directory as a DAG; one bad spec never hides the others.

    A bad setting concerns every pipeline: its SettingError is raised, so the DAG file shows it as its
    import error (naming the variable), rather than each pipeline failing to compile on its own.
    """
    for setting in (settings.POLL_INTERVAL, settings.PARALLEL_RUNS):
        setting.get()
    pipelines, errors = load_pipelines(directory)
    dags: dict[str, Any] = {}
    for pipeline in pipelines:
        try:
            dags[airflow_key(pipeline.name)] = build_dag(pipeline)
        except Exception as err:  # noqa: BLE001 - reported per spec, the others still load
            # A valid spec that does not compile is a defect here, not in the spec: say so loudly.
            log.exception("pipeline %s (%s) is valid but could not be compiled", pipeline.name, pipeline.source_file)
            errors[pipeline.source_file or pipeline.name] = err
    return dags, errors


def spec_errors_report(directory: str | os.PathLike | list | None = None) -> str:
    """All spec errors as one message (empty when every spec is valid).

    Only loads and validates (compiling every DAG again here would double the parse cost); a valid
    spec that fails to compile is logged by the factory.
    """
    _, errors = load_pipelines(directory)
    if not errors:
        return ""
    parts = [f"{len(errors)} pipeline spec(s) invalid; the other pipelines are loaded:"]
    parts += [str(error) if str(path) in str(error) else f"{path}: {error}" for path, error in sorted(errors.items())]
    return "\n\n".join(parts)
