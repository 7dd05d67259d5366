"""Stages and actions starting and succeeding, in real Airflow processes (tests/integration/pipelines/
nt-lifecycle.yaml): one run publishes each event once, in the order the run went, from the worker (a source
action ending there), the triggerer (builds their triggers end) and the dag-processor (the run's end); the
stage its entry conditions skip is not announced."""

from __future__ import annotations

import json

import pytest

from include.sandbox.client import SandboxClient
from tests.integration.helpers import aws_client, create_build_project, event_of, ti_states, topic_inbox, wait_for_run

pytestmark = pytest.mark.integration

PIPELINE = "nt-lifecycle"
TOPIC = "nt-lifecycle"  # the pipeline's own topic: the shared inbox's readers never see these messages
BUILD_SPEC = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ok\n"


@pytest.fixture(scope="module")
def own_inbox(airflow_env, api):
    """The pipeline's topic with a queue of its own subscribed; returns a reader of the queue."""
    api.wait_for_dag(PIPELINE, timeout=240)
    create_build_project(aws_client(airflow_env, "codebuild"), PIPELINE, "acme/webapp", BUILD_SPEC)
    SandboxClient(airflow_env.sandbox_url).set_fault("codebuild", PIPELINE, "slow", seconds=1)
    return topic_inbox(airflow_env, TOPIC)


def test_one_run_publishes_each_stage_and_action_event_once_in_order(api, own_inbox):
    run_id = api.trigger(PIPELINE)["dag_run_id"]
    run = wait_for_run(api, PIPELINE, run_id, timeout=240)
    states = ti_states(api, PIPELINE, run_id)
    assert run["state"] == "success", states
    assert (states["Extras.Conditions"], states["Extras.Smoke"]) == ("skipped", "skipped"), states

    messages = own_inbox(until="SUCCEEDED: pipeline")
    assert {json.loads(m["Message"])["detail"]["execution-id"] for m in messages} == {run_id}
    assert [event_of(m) for m in messages] == [
        ("pipeline", "STARTED"),
        ("stage", "STARTED", "Source"),
        ("action", "STARTED", "Source.Checkout"),
        ("action", "SUCCEEDED", "Source.Checkout"),  # in the worker
        ("stage", "SUCCEEDED", "Source"),
        ("stage", "STARTED", "Build"),
        ("action", "STARTED", "Build.Compile"),
        ("action", "SUCCEEDED", "Build.Compile"),  # by the build's trigger
        ("action", "STARTED", "Build.Unit"),
        ("action", "SUCCEEDED", "Build.Unit"),
        ("stage", "SUCCEEDED", "Build"),
        # Extras: skipped by its entry conditions, neither started nor succeeded.
        ("stage", "STARTED", "Final"),
        ("action", "STARTED", "Final.Announce"),
        ("action", "SUCCEEDED", "Final.Announce"),
        ("stage", "SUCCEEDED", "Final"),  # the run's success callback, before the pipeline's
        ("pipeline", "SUCCEEDED"),
    ]
    assert [m["MessageAttributes"]["event"]["Value"] for m in messages][:4] == [
        "pipeline-started",
        "stage-started",
        "action-started",
        "action-succeeded",
    ]
    # Subjects are cut at SNS's 100 characters: the run id of a manual run is long.
    assert messages[1]["Subject"].startswith(f"STARTED: stage Source of pipeline {PIPELINE} (run manual__")
    assert messages[2]["Subject"].startswith(f"STARTED: action Source.Checkout of pipeline {PIPELINE} (run manual__")
