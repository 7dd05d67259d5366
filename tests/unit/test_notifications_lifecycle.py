"""Stages and actions starting and succeeding (notifications/lifecycle.py): which task publishes each event, the
messages, and that each goes out once however often Airflow runs the callback."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from release_orchestrator.notifications.notifier import (
    PipelineEventNotifier,
    announce_success,
    success_notices,
)
from release_orchestrator.pipeline.loader import load_spec_text
from tests.unit.fakes import FakeStateStore

LIFECYCLE = ["stage-started", "stage-succeeded", "action-started", "action-succeeded"]

SPEC = """
pipeline:
  name: lc
  execution_mode: QUEUED
  preflight: true
  notifications:
    topic_arn: arn:aws:sns:us-east-1:123456789012:t
    events: {events}
  stages:
    - name: Source
      actions:
        - {{name: Checkout, type: source.github, configuration: {{repository: acme/webapp, branch: main}}}}
    - name: Build
      before_entry:
        rules:
          - {{name: Main, type: VariableCheck, configuration: {{variable: "x", value: "x"}}}}
      on_failure: {{result: ROLLBACK}}
      actions:
        - {{name: Unit, type: build.codebuild, run_order: 2, configuration: {{project_name: p}}}}
        - {{name: Lint, type: build.codebuild, run_order: 1, configuration: {{project_name: p}}}}
        - {{name: Compile, type: build.codebuild, run_order: 1, configuration: {{project_name: p}}}}
    - name: Approval
      actions:
        - {{name: SignOff, type: approval.manual, configuration: {{approvers: [qa-lead]}}}}
"""


def compiled(events):
    from release_orchestrator.pipeline.compiler import build_dag

    return build_dag(load_spec_text(SPEC.format(events=json.dumps(events)), source="/tmp/lc.yaml"))


def described(callbacks):
    """A task's or DAG's callbacks as (event, stages reported, at the run's end)."""
    return [
        (c.event, sorted(c.stages), c.at_run_end) if isinstance(c, PipelineEventNotifier) else type(c).__name__
        for c in callbacks or []
    ]


# ---- which task publishes what -------------------------------------------------------------------------
def test_each_event_is_attached_to_the_task_that_sees_it_first():
    dag = compiled(["pipeline-started", "pipeline-succeeded", *LIFECYCLE])
    execute = {t.task_id: described(t.on_execute_callback) for t in dag.tasks}
    success = {t.task_id: described(t.on_success_callback) for t in dag.tasks}
    assert execute == {
        "Preflight.Check": [("pipeline-started", [], False)],
        "Source.Enter": [],
        # The stage's first action: started after its door; the pipeline started before it.
        "Source.Checkout": [("stage-started", ["Source"], False), ("action-started", [], False)],
        "Build.Enter": [],
        # The first task after the next stage's door: Source has ended when it runs.
        "Build.Conditions": [("stage-succeeded", ["Source"], False)],
        # The first action by run order, ties by task id.
        "Build.Compile": [("stage-started", ["Build"], False), ("action-started", [], False)],
        "Build.Lint": [("action-started", [], False)],
        "Build.Unit": [("action-started", [], False)],
        "Build.Rollback": [],
        "Approval.Enter": [],
        "Approval.SignOff": [
            ("stage-succeeded", ["Build"], False),
            ("stage-started", ["Approval"], False),
            ("action-started", [], False),
        ],
    }
    # Actions only (not the doors, the entry conditions, the rollback or the preflight); an approval's
    # success is its decision (approval-approved).
    assert {task for task, callbacks in success.items() if callbacks} == {
        "Source.Checkout",
        "Build.Compile",
        "Build.Lint",
        "Build.Unit",
    }
    assert success["Build.Compile"] == [("action-succeeded", [], False)]
    # The last stage at the run's end, before pipeline-succeeded.
    assert described(dag.on_success_callback) == [
        ("stage-succeeded", ["Approval", "Build", "Source"], True),
        ("pipeline-succeeded", [], False),
    ]
    # Build succeeds when its conditions and actions did; its door and its rollback are not part of it.
    build = next(c for c in dag.get_task("Build.Conditions").on_execute_callback if c.event == "stage-succeeded")
    assert build.stages == {"Source": ["Source.Checkout"]}
    approval = next(c for c in dag.get_task("Approval.SignOff").on_execute_callback if c.event == "stage-succeeded")
    assert approval.stages == {"Build": ["Build.Compile", "Build.Conditions", "Build.Lint", "Build.Unit"]}


def test_a_pipeline_without_the_events_gets_no_callback_more():
    dag = compiled(["pipeline-started", "pipeline-succeeded", "action-failed"])
    assert [t.task_id for t in dag.tasks if t.on_success_callback] == []
    assert {t.task_id for t in dag.tasks if t.on_execute_callback} == {"Preflight.Check"}
    assert described(dag.on_success_callback) == [("pipeline-succeeded", [], False)]


def test_stage_events_alone_touch_only_the_stages_first_tasks():
    dag = compiled(["stage-started"])
    assert {t.task_id for t in dag.tasks if t.on_execute_callback} == {
        "Source.Checkout",
        "Build.Compile",
        "Approval.SignOff",
    }
    assert not dag.on_success_callback


def test_the_new_events_are_known_to_validation_and_the_schema():
    from release_orchestrator.pipeline.schema import spec_schema
    from release_orchestrator.pipeline.validate import NOTIFICATION_EVENTS

    assert set(LIFECYCLE) <= set(NOTIFICATION_EVENTS)
    schema = json.dumps(spec_schema())
    assert all(f'"{event}"' in schema for event in LIFECYCLE)


# ---- messages -----------------------------------------------------------------------------------------
def notifier(topic, event, **kwargs):
    return PipelineEventNotifier(event=event, pipeline="webapp-release", target_arn=topic, **kwargs)


def task_context(store, task_id="Build.Compile", max_tries=0):
    ti = SimpleNamespace(
        task_id=task_id, dag_id="webapp-release", run_id="manual__1", max_tries=max_tries, xcom_pull=lambda **kw: None
    )
    return {"run_id": "manual__1", "ti": ti, "task_state_store": store}


@pytest.mark.parametrize(
    ("event", "state", "subject"),
    [
        ("action-started", "STARTED", "STARTED: action Build.Compile of pipeline webapp-release (run manual__1)"),
        ("action-succeeded", "SUCCEEDED", "SUCCEEDED: action Build.Compile of pipeline webapp-release (run manual__1)"),
    ],
)
def test_action_events_are_codepipeline_action_state_changes(topic_and_queue, event, state, subject):
    topic, received = topic_and_queue
    notifier(topic, event).notify(task_context(FakeStateStore()))
    [envelope] = received()
    assert envelope["Subject"] == subject
    message = json.loads(envelope["Message"])
    assert message["detail-type"] == "CodePipeline Action Execution State Change"
    detail = message["detail"]
    assert (detail["stage"], detail["action"], detail["state"], detail["execution-id"]) == (
        "Build",
        "Compile",
        state,
        "manual__1",
    )
    assert detail["airflow-log-link"].endswith("/dags/webapp-release/runs/manual__1/tasks/Build.Compile")
    assert envelope["MessageAttributes"]["event"]["Value"] == event


@pytest.fixture
def task_states(monkeypatch):
    """The task states the Task SDK answers with, per run; the calls made."""
    from airflow.sdk.execution_time import task_runner

    states: dict[str, dict[str, str]] = {}
    calls = []

    def get_task_states(**kwargs):
        calls.append(kwargs)
        return {run: dict(s) for run, s in states.items() if run in kwargs["run_ids"]}

    monkeypatch.setattr(task_runner.RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    return SimpleNamespace(states=states, calls=calls)


def test_stage_events_are_codepipeline_stage_state_changes_of_the_stage_they_report(topic_and_queue, task_states):
    topic, received = topic_and_queue
    task_states.states["manual__1"] = {"Source.Checkout": "success"}
    store = FakeStateStore()
    # Build's first action announces that Source succeeded, then that Build started.
    notifier(topic, "stage-succeeded", stages={"Source": ["Source.Checkout"]}).notify(task_context(store))
    notifier(topic, "stage-started", stages={"Build": ["Build.Compile"]}).notify(task_context(store))
    envelopes = received()
    assert [e["Subject"] for e in envelopes] == [
        "SUCCEEDED: stage Source of pipeline webapp-release (run manual__1)",
        "STARTED: stage Build of pipeline webapp-release (run manual__1)",
    ]
    details = [json.loads(e["Message"]) for e in envelopes]
    assert {d["detail-type"] for d in details} == {"CodePipeline Stage Execution State Change"}
    assert [(d["detail"]["stage"], d["detail"]["state"]) for d in details] == [
        ("Source", "SUCCEEDED"),
        ("Build", "STARTED"),
    ]
    assert all("action" not in d["detail"] for d in details)


# ---- exactly once -------------------------------------------------------------------------------------
@pytest.mark.parametrize("event", ["action-started", "stage-started", "stage-succeeded"])
def test_started_events_go_out_once_per_round_however_often_the_callback_runs(topic_and_queue, task_states, event):
    """on_execute_callback runs on every try and again on every resumption after a deferral; a clear (a stage
    retried) raises max_tries, and the stage or action starts again."""
    topic, received = topic_and_queue
    task_states.states["manual__1"] = {"Source.Checkout": "success"}
    announce = notifier(topic, event, stages={"Source": ["Source.Checkout"]} if event.startswith("stage") else None)
    store = FakeStateStore()
    for _ in range(3):  # first try, resumed after deferring, a retry
        announce.notify(task_context(store, max_tries=1))
    assert len(received()) == 1
    announce.notify(task_context(store, max_tries=2))  # cleared: a new round
    announce.notify(task_context(store, max_tries=2))
    assert len(received()) == 1
    if event == "stage-succeeded":
        assert len(task_states.calls) == 2  # read once per round: not again once announced


def test_a_skipped_stage_is_not_announced_as_succeeded(topic_and_queue, task_states):
    """Skipped by its entry conditions (result SKIP) or by a rollback run: its successor still runs."""
    topic, received = topic_and_queue
    task_states.states["manual__1"] = {"Extras.Conditions": "skipped", "Extras.Smoke": "skipped"}
    stages = {"Extras": ["Extras.Conditions", "Extras.Smoke"]}
    notifier(topic, "stage-succeeded", stages=stages).notify(task_context(FakeStateStore(), task_id="Final.Announce"))
    assert received() == []


def run_end_context(conf=None):
    ti = SimpleNamespace(task_id="Final.Announce", dag_id="webapp-release", run_id="manual__1")
    return {"run_id": "manual__1", "ti": ti, "dag_run": SimpleNamespace(run_id="manual__1", conf=conf or {})}


def test_the_runs_end_announces_its_last_stage_or_the_stage_a_rollback_run_ran(topic_and_queue, task_states):
    topic, received = topic_and_queue
    stages = {"Build": ["Build.Compile"], "Deploy": ["Deploy.Ship"], "Final": ["Final.Announce"]}
    at_end = notifier(topic, "stage-succeeded", stages=stages, at_run_end=True)
    task_states.states["manual__1"] = {
        "Build.Compile": "success",
        "Deploy.Ship": "success",
        "Final.Announce": "success",
    }
    at_end.notify(run_end_context())
    assert [json.loads(e["Message"])["detail"]["stage"] for e in received()] == ["Final"]

    task_states.states["manual__1"] = {
        "Build.Compile": "skipped",
        "Deploy.Ship": "success",
        "Final.Announce": "skipped",
    }
    rollback = {"rollback": {"stage": "Deploy", "target_run_id": "manual__0", "held_by": "manual__00"}}
    at_end.notify(run_end_context(rollback))
    assert [json.loads(e["Message"])["detail"]["stage"] for e in received()] == ["Deploy"]

    at_end.notify(run_end_context())  # a run whose last stage was skipped: announced when it was left
    assert received() == []


# ---- actions their trigger ends ----------------------------------------------------------------------
class TriggerTI:
    """The task instance a trigger sees."""

    dag_id, task_id, run_id, map_index = "webapp-release", "Build.Compile", "manual__1", -1


def test_the_trigger_publishes_action_succeeded_once_and_the_callback_then_does_not(topic_and_queue, sdk_xcoms):
    topic, received = topic_and_queue
    succeeded = notifier(topic, "action-succeeded")
    operator = SimpleNamespace(on_success_callback=[succeeded, notifier(topic, "action-started")])
    notices = success_notices(operator)
    assert [n["event"] for n in notices] == ["action-succeeded"]
    notices = json.loads(json.dumps(notices))  # as trigger kwargs
    announce_success(notices, TriggerTI())
    announce_success(notices, TriggerTI())  # the trigger run again after a triggerer crash
    [envelope] = received()
    assert envelope["Subject"] == "SUCCEEDED: action Build.Compile of pipeline webapp-release (run manual__1)"
    assert set(sdk_xcoms[("Build.Compile", "success_notices")]) == {"action-succeeded"}
    # Should Airflow run the task's success callbacks as well, they find the record.
    ti = SimpleNamespace(task_id="Build.Compile", xcom_pull=lambda task_ids, key: sdk_xcoms.get((task_ids, key)))
    succeeded.notify({"run_id": "manual__1", "ti": ti})
    assert received() == []


def test_no_success_notices_without_the_event():
    assert success_notices(SimpleNamespace(on_success_callback=[])) is None
    assert success_notices(SimpleNamespace()) is None


def test_build_triggers_carry_the_success_notices_through_serialization():
    from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger

    notice = {"event": "action-succeeded", "pipeline": "webapp-release", "target_arn": "arn:aws:sns:us-east-1:1:t"}
    trigger = CodeBuildBuildTrigger(build_id="p:1", success_notices=[notice])
    path, kwargs = trigger.serialize()
    assert kwargs["success_notices"] == [notice]
    assert CodeBuildBuildTrigger(**kwargs).success_notices == [notice]
