"""What stopping a run and retrying a stage publish (notifications/run_events.py from the api-server, and the
DAG failure callback of a run stopped and waited for): pipeline STOPPING / STOPPED / RESUMED and stage RESUMED,
to the pipeline's topic (moto), only the events the pipeline asks for; a run stopped and waited for ends
STOPPED, not FAILED."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from release_orchestrator.notifications import notifier, run_events
from release_orchestrator.notifications.notifier import PipelineEventNotifier, stopped_and_waited
from release_orchestrator.pipeline.compiler import build_dag
from release_orchestrator.pipeline.loader import load_spec_text

SPEC = """\
pipeline:
  name: ops
  notifications:
    topic_arn: {topic}
    events: [{events}]
  stages:
    - name: Build
      actions:
        - {{name: Compile, type: build.codebuild, configuration: {{project_name: webapp-build}}}}
"""


def pipeline(topic: str, events: str):
    return load_spec_text(SPEC.format(topic=topic, events=events))


def subjects_and_details(received) -> list[tuple[str, dict]]:
    return [(m["Subject"], json.loads(m["Message"])["detail"]) for m in received()]


def test_stop_and_retry_publish_what_the_pipeline_asks_for(topic_and_queue, monkeypatch):
    topic, received = topic_and_queue
    spec = pipeline(topic, "pipeline-stopped, pipeline-resumed, stage-resumed")
    monkeypatch.setattr(run_events, "_pipeline", lambda dag_id: spec if dag_id == "ops" else None)
    monkeypatch.setattr(run_events, "_conf", lambda dag_id, run_id: {})
    stop = {"stop-execution-trigger": {"abandon": True, "reason": "wrong branch", "user": "release-manager"}}
    run_events.announce("ops", "manual__1", ["pipeline-stopping"], stop)  # not asked for
    run_events.announce("ops", "manual__1", ["pipeline-stopped"], stop)
    [(subject, detail)] = subjects_and_details(received)
    assert subject == "STOPPED: pipeline ops (run manual__1)"
    assert (detail["state"], detail["stop-execution-trigger"]["reason"], detail["execution-type"]) == (
        "STOPPED",
        "wrong branch",
        "STANDARD",
    )
    retry = {"retry": {"stage": "Build", "mode": "FAILED_ACTIONS", "user": "qa-lead", "reason": "flaky"}}
    run_events.announce("ops", "manual__1", ["pipeline-resumed", "stage-resumed"], retry, stages=["Build"])
    published = subjects_and_details(received)
    assert [s for s, _ in published] == [
        "RESUMED: pipeline ops (run manual__1)",
        "RESUMED: stage Build of pipeline ops (run manual__1)",
    ]
    assert published[1][1]["stage"] == "Build" and published[1][1]["retry"]["user"] == "qa-lead"
    assert "stage" not in published[0][1]
    # A stage event for each stage named.
    spec.notifications.events.append("stage-stopped")
    run_events.announce("ops", "manual__1", ["stage-stopped"], stop, stages=["Build", "Deploy"])
    assert [d["stage"] for _, d in subjects_and_details(received)] == ["Build", "Deploy"]
    # A pipeline the api-server has no spec of publishes nothing, and the operation goes on.
    run_events.announce("gone", "manual__1", ["pipeline-stopped"], stop)
    assert received() == []


@pytest.mark.parametrize(
    "states, stopped",
    [
        ({"Build.Compile": "success", "Release.Ship": "upstream_failed"}, True),  # stopped and waited for
        ({"Build.Compile": "failed", "Release.Ship": "upstream_failed"}, False),  # failed
        ({"Build.Compile": "success", "Release.Ship": "success"}, False),
    ],
)
def test_a_run_that_ended_failed_with_nothing_failed_was_stopped_and_waited_for(monkeypatch, states, stopped):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(lambda **kw: {"manual__1": states}))
    context = {"dag": SimpleNamespace(dag_id="ops"), "run_id": "manual__1"}
    assert stopped_and_waited(context) is stopped


def test_the_failure_callback_says_stopped_or_failed_never_both(topic_and_queue, monkeypatch):
    topic, received = topic_and_queue
    dag = build_dag(pipeline(topic, "pipeline-failed, pipeline-stopped"))
    callbacks = dag.on_failure_callback
    assert [c.event for c in callbacks if isinstance(c, PipelineEventNotifier)] == [
        "pipeline-failed",
        "pipeline-stopped",
    ]
    context = {"dag": dag, "run_id": "manual__1"}
    for stopped, expected in ((True, "STOPPED: pipeline ops"), (False, "FAILED: pipeline ops")):
        monkeypatch.setattr(notifier, "stopped_and_waited", lambda context, stopped=stopped: stopped)
        for callback in callbacks:
            callback.notify(context)
        [(subject, detail)] = subjects_and_details(received)
        assert subject.startswith(expected)
        assert ("stop-execution-trigger" in detail) is stopped
