"""The approval's wait in the triggerer: timeout, superseding by newer runs, and marked decisions."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY, WAIT_XCOM_KEY
from release_orchestrator.triggers import approval as approval_trigger
from release_orchestrator.triggers.approval import ApprovalWaitTrigger

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
TASK = "Approval.SignOff"


class FakeAirflow:
    """What the trigger asks the Task SDK: approval states of every run, and XComs."""

    def __init__(self, states: dict[str, str | None], run_after: dict[str, datetime]):
        self.states = states
        self.xcoms = {
            (run_id, WAIT_XCOM_KEY): {"run_after": moment.isoformat()} for run_id, moment in run_after.items()
        }
        self.reads: list[tuple[str, str]] = []

    def install(self, trigger: ApprovalWaitTrigger) -> ApprovalWaitTrigger:
        trigger.approval_states = lambda: dict(self.states)

        def read(run_id, key):
            self.reads.append((run_id, key))
            return self.xcoms.get((run_id, key))

        trigger.read_xcom = read
        trigger.write_xcom = lambda key, value: self.xcoms.__setitem__((trigger.run_id, key), value)
        return trigger


@pytest.fixture(autouse=True)
def empty_cache():
    approval_trigger._ORDER_CACHE.clear()
    yield
    approval_trigger._ORDER_CACHE.clear()


def make_trigger(run_id="run-b", run_after=T0, expires=None, supersede=True, **kwargs) -> ApprovalWaitTrigger:
    expires = expires or datetime.now(timezone.utc) + timedelta(days=7)
    return ApprovalWaitTrigger(
        dag_id="webapp",
        run_id=run_id,
        task_id=TASK,
        expires=expires.isoformat(),
        run_after=run_after.isoformat(),
        supersede=supersede,
        check_interval=1,
        **kwargs,
    )


async def first_event(trigger: ApprovalWaitTrigger, timeout: float = 5):
    async def first():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(first(), timeout)


def test_fires_timeout_once_the_expiry_has_passed():
    trigger = make_trigger(expires=datetime.now(timezone.utc) - timedelta(seconds=1), supersede=False)
    assert asyncio.run(first_event(trigger)) == {"kind": "timeout", "expires": trigger.expires}


def test_waits_for_the_expiry_without_superseding():
    trigger = make_trigger(expires=datetime.now(timezone.utc) + timedelta(seconds=0.5), supersede=False)
    trigger.approval_states = lambda: pytest.fail("superseding is off: no need to look at other runs")
    started = datetime.now(timezone.utc)
    assert asyncio.run(first_event(trigger))["kind"] == "timeout"
    assert datetime.now(timezone.utc) - started >= timedelta(seconds=0.4)


def test_a_newer_run_waiting_at_the_same_approval_supersedes():
    airflow = FakeAirflow(
        {"run-a": "failed", "run-b": "deferred", "run-c": "deferred"},
        {"run-a": T0 - timedelta(hours=1), "run-b": T0, "run-c": T0 + timedelta(minutes=5)},
    )
    trigger = airflow.install(make_trigger())
    assert asyncio.run(first_event(trigger)) == {"kind": "superseded", "superseded_by": "run-c"}


def test_the_newest_of_several_newer_runs_is_named():
    airflow = FakeAirflow(
        {"run-b": "deferred", "run-c": "success", "run-d": "deferred"},
        {"run-b": T0, "run-c": T0 + timedelta(minutes=1), "run-d": T0 + timedelta(minutes=2)},
    )
    assert airflow.install(make_trigger()).newer_run() == "run-d"


def test_older_runs_and_runs_that_never_waited_do_not_supersede():
    airflow = FakeAirflow(
        {
            "run-a": "deferred",
            "run-b": "deferred",
            "run-c": "upstream_failed",
            "run-d": "running",
            "run-e": None,
            "run-f": "failed",
        },
        {"run-a": T0 - timedelta(minutes=1), "run-b": T0},
    )
    # run-c never reached the approval; run-d is still before its wait (no approval_wait yet); run-e was
    # cleared; run-f's approval was marked failed before it ever waited.
    trigger = airflow.install(make_trigger(expires=datetime.now(timezone.utc) + timedelta(seconds=1.5)))
    assert asyncio.run(first_event(trigger))["kind"] == "timeout"


def test_a_newer_run_that_was_already_decided_supersedes_an_older_run_arriving_late():
    """Runs overlap: the newer build passed the approval before the older one got there."""
    airflow = FakeAirflow({"run-b": "deferred", "run-c": "success"}, {"run-b": T0, "run-c": T0 + timedelta(seconds=30)})
    assert airflow.install(make_trigger()).newer_run() == "run-c"


def test_runs_created_at_the_same_moment_are_ordered_by_run_id():
    airflow = FakeAirflow(
        {"run-b": "deferred", "run-c": "deferred", "run-a": "deferred"}, {"run-a": T0, "run-b": T0, "run-c": T0}
    )
    assert airflow.install(make_trigger()).newer_run() == "run-c"


def test_each_runs_order_is_read_once_and_finished_runs_without_a_wait_are_not_read_again():
    airflow = FakeAirflow(
        {"run-a": "success", "run-old": "success", "run-b": "deferred"}, {"run-a": T0 - timedelta(days=3), "run-b": T0}
    )
    airflow.xcoms.pop(("run-old", WAIT_XCOM_KEY), None)  # approved before approvals recorded their wait
    trigger = airflow.install(make_trigger())
    for _ in range(3):
        assert trigger.newer_run() is None
    assert sorted(airflow.reads) == [("run-a", WAIT_XCOM_KEY), ("run-old", WAIT_XCOM_KEY)]


def test_a_failed_look_at_other_runs_is_retried_at_the_next_check():
    airflow = FakeAirflow({"run-b": "deferred", "run-c": "deferred"}, {"run-b": T0, "run-c": T0 + timedelta(1)})
    trigger = airflow.install(make_trigger())
    looks = []

    def flaky():
        looks.append(1)
        if len(looks) == 1:
            raise ConnectionError("api-server restarting")
        return dict(airflow.states)

    trigger.approval_states = flaky
    assert asyncio.run(first_event(trigger)) == {"kind": "superseded", "superseded_by": "run-c"}
    assert len(looks) == 2


def test_serializes_everything_it_needs():
    trigger = make_trigger(notifications={"pipeline": "webapp", "topic_arn": "arn:t", "events": []})
    path, kwargs = trigger.serialize()
    assert path == "release_orchestrator.triggers.approval.ApprovalWaitTrigger"
    again = ApprovalWaitTrigger(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)


# ---- decisions by marking ------------------------------------------------------------------------
def marked(topic: str, state: str, mode: str = "mark") -> tuple[ApprovalWaitTrigger, FakeAirflow]:
    airflow = FakeAirflow({"run-b": state}, {"run-b": T0})
    trigger = airflow.install(
        make_trigger(
            mode=mode,
            notifications={
                "pipeline": "webapp",
                "topic_arn": topic,
                "events": ["approval-approved", "approval-rejected"],
                "aws_conn_id": "aws_default",
                "region_name": "us-east-1",
            },
        )
    )
    return trigger, airflow


@pytest.mark.parametrize(
    "state, outcome, subject", [("success", "Approved", "APPROVED"), ("failed", "Rejected", "REJECTED")]
)
def test_a_marked_decision_the_gate_recorded_is_announced_when_airflow_cancels_the_wait(
    topic_and_queue, state, outcome, subject
):
    topic, received = topic_and_queue
    trigger, airflow = marked(topic, state)
    recorded = {"Outcome": outcome, "Reviewer": "qa-lead", "Comment": "checked", "DecidedBy": "mark"}
    airflow.xcoms[("run-b", DECISION_XCOM_KEY)] = {**recorded, "DecidedAt": "2026-03-01T12:00:00Z", "Announced": False}
    asyncio.run(trigger.on_kill())
    [envelope] = received()
    assert envelope["Subject"] == f"{subject}: webapp Approval.SignOff by qa-lead (run run-b)"
    detail = json.loads(envelope["Message"])["detail"]
    assert detail["approval"] == {
        "outcome": outcome,
        "reviewer": "qa-lead",
        "comment": "checked",
        "reason": "decided by marking the task",
    }
    assert airflow.xcoms[("run-b", DECISION_XCOM_KEY)] == {
        **recorded,
        "DecidedAt": "2026-03-01T12:00:00Z",
        "Announced": True,
    }
    asyncio.run(trigger.on_kill())  # cancelled again (e.g. a triggerer restart): announced once
    assert received() == []


@pytest.mark.parametrize("decision", [None, {"Outcome": "Stopped", "Reason": "the run was marked success"}])
def test_a_task_marked_without_a_decision_by_the_gate_announces_no_approval(topic_and_queue, decision):
    topic, received = topic_and_queue
    trigger, airflow = marked(topic, "success")
    if decision:
        airflow.xcoms[("run-b", DECISION_XCOM_KEY)] = decision
    asyncio.run(trigger.on_kill())
    assert received() == []


def test_a_form_answer_announced_by_the_worker_is_not_announced_again(topic_and_queue):
    topic, received = topic_and_queue
    trigger, airflow = marked(topic, "success", mode="form")
    airflow.xcoms[("run-b", DECISION_XCOM_KEY)] = {"Outcome": "Approved", "Reviewer": "qa-lead", "Announced": True}
    asyncio.run(trigger.on_kill())
    assert received() == []


@pytest.mark.parametrize("state", [None, "scheduled", "queued", "running"])
def test_a_cleared_or_resumed_task_announces_nothing(topic_and_queue, state):
    topic, received = topic_and_queue
    trigger, airflow = marked(topic, state)
    asyncio.run(trigger.on_kill())
    assert received() == []
    assert ("run-b", DECISION_XCOM_KEY) not in airflow.xcoms


# ---- ending the task in the triggerer ------------------------------------------------------------
def ending(topic: str, states: dict[str, str | None], run_after: dict[str, datetime], **kwargs):
    airflow = FakeAirflow(states, run_after)
    trigger = airflow.install(
        make_trigger(
            ends_task=True,
            timeout="0:05:00",
            notifications={
                "pipeline": "webapp",
                "topic_arn": topic,
                "events": ["approval-rejected", "pipeline-superseded"],
                "aws_conn_id": "aws_default",
                "region_name": "us-east-1",
            },
            **kwargs,
        )
    )
    return trigger, airflow


async def first_raw_event(trigger: ApprovalWaitTrigger, timeout: float = 5):
    async def first():
        async for event in trigger.run():
            return event

    return await asyncio.wait_for(first(), timeout)


def test_a_timeout_is_announced_recorded_and_fails_the_task_from_the_triggerer(topic_and_queue):
    from airflow.triggers.base import TaskFailedEvent

    topic, received = topic_and_queue
    trigger, airflow = ending(
        topic,
        {"run-b": "deferred"},
        {"run-b": T0},
        supersede=False,
        expires=datetime.now(timezone.utc) - timedelta(seconds=1),
    )
    event = asyncio.run(first_raw_event(trigger))
    assert isinstance(event, TaskFailedEvent)
    assert airflow.xcoms[("run-b", "failure_reason")] == (
        f"approval {TASK} rejected: nobody approved within 0:05:00 (timeout)"
    )
    [envelope] = received()
    assert json.loads(envelope["Message"])["detail"]["approval"]["reason"] == "timeout: nobody decided within 0:05:00"
    decision = airflow.xcoms[("run-b", DECISION_XCOM_KEY)]
    assert (decision["Outcome"], decision["Announced"]) == ("Rejected", True)

    # A restarted triggerer running the same trigger again fails the task without a second message.
    again = asyncio.run(first_raw_event(trigger))
    assert isinstance(again, TaskFailedEvent)
    assert received() == []


def test_superseding_is_announced_recorded_and_fails_the_task_from_the_triggerer(topic_and_queue):
    from airflow.triggers.base import TaskFailedEvent

    topic, received = topic_and_queue
    trigger, airflow = ending(
        topic, {"run-b": "deferred", "run-c": "deferred"}, {"run-b": T0, "run-c": T0 + timedelta(minutes=1)}
    )
    event = asyncio.run(first_raw_event(trigger))
    assert isinstance(event, TaskFailedEvent)
    assert airflow.xcoms[("run-b", "failure_reason")] == f"approval {TASK}: superseded by run run-c"
    [envelope] = received()
    assert envelope["Subject"] == "SUPERSEDED: pipeline webapp (run run-b) by run run-c"
    decision = airflow.xcoms[("run-b", DECISION_XCOM_KEY)]
    assert (decision["Outcome"], decision["SupersededBy"], decision["Announced"]) == ("Superseded", "run-c", True)


def test_in_form_mode_an_answer_given_meanwhile_decides(topic_and_queue):
    topic, received = topic_and_queue
    trigger, airflow = ending(
        topic,
        {"run-b": "deferred"},
        {"run-b": T0},
        supersede=False,
        mode="form",
        expires=datetime.now(timezone.utc) - timedelta(seconds=1),
    )
    trigger.form_answered = lambda: True
    event = asyncio.run(first_raw_event(trigger))
    assert event.payload == {"kind": "answered"}
    assert received() == []
    assert ("run-b", DECISION_XCOM_KEY) not in airflow.xcoms
