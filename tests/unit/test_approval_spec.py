"""Execution modes and superseding in the spec and the compiled DAG."""

from __future__ import annotations

import pytest

from release_orchestrator import settings
from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.api import action, pipeline, stage
from release_orchestrator.pipeline.errors import SpecError
from release_orchestrator.pipeline.loader import load_spec_text

TOPIC = "arn:aws:sns:us-east-1:123456789012:release-notifications"


def approval_pipeline(**fields):
    return pipeline(
        "gated",
        stages=[
            stage("Source", [action("Checkout", "source.github", repository="a/b", branch="main")]),
            stage("Approval", [action("SignOff", "approval.manual")]),
        ],
        **fields,
    )


@pytest.mark.parametrize(
    "mode, supersede_approvals, runs, supersedes",
    [
        ("QUEUED", None, settings.PARALLEL_RUNS.default, False),
        # A newer run waiting to enter the approval's stage supersedes the one waiting for approval.
        ("QUEUED", True, settings.PARALLEL_RUNS.default, True),
        ("PARALLEL", None, settings.PARALLEL_RUNS.default, False),
        ("PARALLEL", True, settings.PARALLEL_RUNS.default, True),
        ("SUPERSEDED", None, settings.PARALLEL_RUNS.default, True),
        ("SUPERSEDED", False, settings.PARALLEL_RUNS.default, False),
    ],
)
def test_execution_modes(mode, supersede_approvals, runs, supersedes):
    dag = compiler.build_dag(approval_pipeline(execution_mode=mode, supersede_approvals=supersede_approvals))
    assert dag.max_active_runs == runs
    assert dag.task_dict["Approval.SignOff"].supersede is supersedes


def test_the_yaml_field_is_read_and_type_checked():
    spec = """
pipeline:
  name: gated
  execution_mode: SUPERSEDED
  supersede_approvals: {value}
  stages:
    - name: Approval
      actions:
        - name: SignOff
          type: approval.manual
"""
    assert load_spec_text(spec.format(value="false")).supersede_approvals is False
    with pytest.raises(SpecError, match="supersede_approvals.*expected true or false"):
        load_spec_text(spec.format(value="sometimes"))


def test_approvals_get_the_pipelines_notifications_and_the_run_end_catches_up_on_decisions():
    dag = compiler.build_dag(
        approval_pipeline(
            execution_mode="SUPERSEDED",
            notifications={
                "topic_arn": TOPIC,
                "events": ["pipeline-failed", "pipeline-superseded", "approval-needed", "approval-approved"],
            },
        )
    )
    approval = dag.task_dict["Approval.SignOff"]
    assert approval.sns_topic_arn == TOPIC
    assert approval.notifications["events"] == ["pipeline-superseded", "approval-approved"]
    failed, catch_up = dag.on_failure_callback
    assert failed.event == "pipeline-failed" and failed.superseding_task_ids[:1] == ["Approval.SignOff"]
    assert catch_up.approval_task_ids == ["Approval.SignOff"]
    assert dag.on_success_callback == [catch_up]


def test_without_decision_events_there_is_no_catch_up():
    dag = compiler.build_dag(approval_pipeline(notifications={"topic_arn": TOPIC, "events": ["approval-needed"]}))
    assert dag.on_success_callback is None and dag.on_failure_callback is None
    assert dag.task_dict["Approval.SignOff"].notifications is None
