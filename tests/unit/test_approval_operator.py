"""approval.manual operators: the wait they start, how it ends without a person, and each message once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from airflow.providers.standard.exceptions import HITLRejectException
from airflow.sdk.exceptions import TaskDeferred

from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY, WAIT_XCOM_KEY
from release_orchestrator.operators import approval as approval_module
from release_orchestrator.operators.approval import (
    ApprovalSuperseded,
    ApprovalTimedOut,
    FormApprovalOperator,
    ManualApprovalOperator,
)
from release_orchestrator.triggers.approval import ApprovalWaitTrigger
from tests.unit.fakes import FakeStateStore

RUN_AFTER = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class FakeTI:
    dag_id = "webapp"
    task_id = "Approval.SignOff"
    run_id = "manual__1"
    map_index = -1
    id = "0195e6c6-0000-7000-8000-000000000001"

    def __init__(self):
        self.max_tries = 0
        self.xcom = {}

    def xcom_push(self, key, value):
        self.xcom[key] = json.loads(json.dumps(value))


def make_context(store=None, ti=None):
    ti = ti or FakeTI()
    return {
        "ti": ti,
        "task_instance": ti,
        "task_state_store": store if store is not None else FakeStateStore(),
        "run_id": ti.run_id,
        "dag": SimpleNamespace(dag_id=ti.dag_id),
        "dag_run": SimpleNamespace(run_id=ti.run_id, run_after=RUN_AFTER, clear_number=0),
    }


def make(cls, topic, **kwargs):
    return cls(
        task_id="Approval.SignOff",
        sns_topic_arn=topic,
        supersede=True,
        check_interval=5,
        notifications={
            "pipeline": "webapp",
            "topic_arn": topic,
            "aws_conn_id": "aws_default",
            "region_name": "us-east-1",
            "events": ["approval-approved", "approval-rejected", "pipeline-superseded"],
        },
        **kwargs,
    )


def start(operator, context) -> ApprovalWaitTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    assert deferred.value.method_name == "execute_complete"
    return deferred.value.trigger


def subjects(received) -> list[str]:
    return [m["Subject"] for m in received()]


# ---- the wait -----------------------------------------------------------------------------------
def test_the_wait_announces_itself_and_records_the_runs_place(topic_and_queue):
    topic, received = topic_and_queue
    context = make_context()
    before = datetime.now(timezone.utc)
    trigger = start(make(ManualApprovalOperator, topic, timeout="2h"), context)

    assert isinstance(trigger, ApprovalWaitTrigger)
    assert (trigger.dag_id, trigger.run_id, trigger.task_id, trigger.supersede, trigger.check_interval) == (
        "webapp",
        "manual__1",
        "Approval.SignOff",
        True,
        5.0,
    )
    expires = datetime.fromisoformat(trigger.expires)
    assert timedelta(hours=2) - timedelta(seconds=5) <= expires - before <= timedelta(hours=2, seconds=5)
    wait = context["ti"].xcom[WAIT_XCOM_KEY]
    assert datetime.fromisoformat(wait["run_after"]) == RUN_AFTER == datetime.fromisoformat(trigger.run_after)
    assert (wait["expires"], wait["wait"], wait["clear_number"]) == (trigger.expires, 1, 0)
    [envelope] = received()
    assert envelope["Subject"] == "APPROVAL NEEDED: webapp Approval.SignOff"
    assert json.loads(envelope["Message"])["approval"]["expires"] == expires.strftime("%Y-%m-%dT%H:%MZ")


def test_a_retry_continues_the_wait_without_a_second_message(topic_and_queue):
    topic, received = topic_and_queue
    store = FakeStateStore()
    first = start(make(ManualApprovalOperator, topic), make_context(store))
    again = start(make(ManualApprovalOperator, topic), make_context(store))  # same max_tries: a retry
    assert again.expires == first.expires  # the timeout does not start over
    assert subjects(received) == ["APPROVAL NEEDED: webapp Approval.SignOff"]


def test_a_clear_starts_a_new_wait_that_is_announced_again(topic_and_queue):
    topic, received = topic_and_queue
    store = FakeStateStore()
    start(make(ManualApprovalOperator, topic), make_context(store))
    cleared = FakeTI()
    cleared.max_tries = 1  # Airflow raises max_tries when someone clears the task
    context = make_context(store, cleared)
    start(make(ManualApprovalOperator, topic), context)
    assert context["ti"].xcom[WAIT_XCOM_KEY]["wait"] == 2
    assert subjects(received) == ["APPROVAL NEEDED: webapp Approval.SignOff"] * 2


def test_a_failed_announcement_is_tried_again_by_the_next_try(topic_and_queue, monkeypatch):
    topic, received = topic_and_queue
    monkeypatch.setattr("release_orchestrator.notifications.publishing.time.sleep", lambda s: None)
    store = FakeStateStore()
    real = approval_module.SnsHook.publish_to_target
    monkeypatch.setattr(
        approval_module.SnsHook,
        "publish_to_target",
        lambda self, **kw: (_ for _ in ()).throw(ConnectionError("SNS down")),
    )
    start(make(ManualApprovalOperator, topic), make_context(store))
    assert received() == []
    monkeypatch.setattr(approval_module.SnsHook, "publish_to_target", real)
    start(make(ManualApprovalOperator, topic), make_context(store))
    assert subjects(received) == ["APPROVAL NEEDED: webapp Approval.SignOff"]


def test_timeout_is_checked_when_the_dag_is_built_and_may_come_from_a_variable():
    with pytest.raises(ValueError, match="outside the allowed range"):
        ManualApprovalOperator(task_id="a", timeout="1m")
    operator = ManualApprovalOperator(task_id="a", timeout="{{ params['APPROVAL_TIMEOUT'] }}")
    operator.approval_timeout = "90d"  # as rendered at run time
    with pytest.raises(ValueError, match="outside the allowed range"):
        start(operator, make_context())


def test_the_shortest_timeout_is_five_minutes_unless_the_installation_lowers_it(monkeypatch):
    from release_orchestrator.pipeline.loader import parse_spec_text

    def problems(timeout: str) -> list[str]:
        source = {"name": "S", "type": "source.github", "configuration": {"repository": "a/b", "branch": "main"}}
        approval = {"name": "SignOff", "type": "approval.manual", "configuration": {"timeout": timeout}}
        stages = [{"name": "Source", "actions": [source]}, {"name": "Approval", "actions": [approval]}]
        _, errors = parse_spec_text(json.dumps({"pipeline": {"name": "p", "stages": stages}}), "p.yaml")
        return [str(e) for e in errors]

    assert problems("5m") == []
    [problem] = problems("4m59s")
    assert "timeout" in problem and "'4m59s' is outside the allowed range of 5 minutes to 60 days" in problem
    with pytest.raises(ValueError, match="'30s' is outside the allowed range of 5 minutes"):
        ManualApprovalOperator(task_id="a", timeout="30s")

    monkeypatch.setenv("RELEASE_ORCHESTRATOR_APPROVAL_TIMEOUT_MIN_SECONDS", "10")
    assert problems("10s") == []
    assert "'9s' is outside the allowed range of 10 seconds to 60 days" in problems("9s")[0]
    assert ManualApprovalOperator(task_id="a", timeout="30s").approval_timeout == "30s"


# ---- how the wait ends without a person ------------------------------------------------------------
def test_timeout_rejects_and_is_announced_once(topic_and_queue):
    topic, received = topic_and_queue
    store = FakeStateStore()
    context = make_context(store)
    operator = make(ManualApprovalOperator, topic, timeout="30m")
    start(operator, context)
    received()
    for _ in range(2):  # the resumed try runs again (say its worker died after publishing)
        with pytest.raises(ApprovalTimedOut, match=r"nobody approved within 0:30:00 \(timeout\)"):
            operator.execute_complete(context, {"kind": "timeout"})
    [envelope] = received()
    assert envelope["Subject"] == "REJECTED: webapp Approval.SignOff (run manual__1)"
    assert json.loads(envelope["Message"])["detail"]["approval"] == {
        "outcome": "Rejected",
        "reason": "timeout: nobody decided within 0:30:00",
    }
    assert context["ti"].xcom[DECISION_XCOM_KEY]["Outcome"] == "Rejected"


def test_superseded_fails_without_retry_and_announces_the_newer_run_once(topic_and_queue):
    topic, received = topic_and_queue
    context = make_context()
    operator = make(ManualApprovalOperator, topic)
    start(operator, context)
    received()
    for _ in range(2):
        with pytest.raises(ApprovalSuperseded, match="superseded by run manual__2") as raised:
            operator.execute_complete(context, {"kind": "superseded", "superseded_by": "manual__2"})
    assert raised.value.superseded_by == "manual__2"
    [envelope] = received()
    assert envelope["Subject"] == "SUPERSEDED: pipeline webapp (run manual__1) by run manual__2"
    detail = json.loads(envelope["Message"])["detail"]
    assert (detail["state"], detail["superseded-by"], detail["reason"]) == (
        "SUPERSEDED",
        "manual__2",
        "superseded by run manual__2",
    )
    assert context["ti"].xcom[DECISION_XCOM_KEY]["Outcome"] == "Superseded"


def test_after_the_wait_ended_a_new_try_waits_and_announces_again(topic_and_queue):
    topic, received = topic_and_queue
    store = FakeStateStore()
    context = make_context(store)
    operator = make(ManualApprovalOperator, topic)
    start(operator, context)
    with pytest.raises(ApprovalTimedOut):
        operator.execute_complete(context, {"kind": "timeout"})
    start(operator, make_context(store))  # a retry after the timeout: a new wait
    assert subjects(received) == [
        "APPROVAL NEEDED: webapp Approval.SignOff",
        "REJECTED: webapp Approval.SignOff (run manual__1)",
        "APPROVAL NEEDED: webapp Approval.SignOff",
    ]


# ---- form mode ----------------------------------------------------------------------------------
@pytest.fixture
def hitl(monkeypatch):
    calls = {"upsert": [], "response": None}
    monkeypatch.setattr(
        "airflow.sdk.execution_time.hitl.upsert_hitl_detail", lambda **kwargs: calls["upsert"].append(kwargs)
    )
    monkeypatch.setattr(
        "airflow.sdk.execution_time.hitl.get_hitl_detail_content_detail",
        lambda ti_id: calls["response"] or SimpleNamespace(response_received=False),
    )
    return calls


def answer(option, comment, user="qa-lead"):
    return {
        "chosen_options": [option],
        "params_input": {"comment": comment},
        "responded_at": datetime(2026, 3, 1, 13, 0, tzinfo=timezone.utc),
        "responded_by_user": {"id": user, "name": user},
    }


def test_form_writes_the_form_for_the_approvers_and_waits_on_the_trigger(topic_and_queue, hitl):
    topic, received = topic_and_queue
    operator = make(FormApprovalOperator, topic, approvers=["qa-lead"], custom_data="Release abc")
    trigger = start(operator, make_context())
    [form] = hitl["upsert"]
    assert form["options"] == ["Approve", "Reject"]
    assert form["assigned_users"] is None  # who may answer is the gate's to check (gate/), by name and role
    assert form["subject"] == "Approve webapp Approval.SignOff?"
    assert "comment" in form["params"]
    assert isinstance(trigger, ApprovalWaitTrigger) and trigger.supersede
    assert subjects(received) == ["APPROVAL NEEDED: webapp Approval.SignOff"]


def test_form_approval_gives_outputs_and_is_announced_with_the_reviewer(topic_and_queue, hitl):
    topic, received = topic_and_queue
    context = make_context()
    operator = make(FormApprovalOperator, topic, approvers=["qa-lead"])
    start(operator, context)
    received()
    outputs = operator.execute_complete(context, answer("Approve", "checked on staging"))
    assert (outputs["Outcome"], outputs["Reviewer"], outputs["Comment"]) == (
        "Approved",
        "qa-lead",
        "checked on staging",
    )
    [envelope] = received()
    assert envelope["Subject"] == "APPROVED: webapp Approval.SignOff by qa-lead (run manual__1)"
    assert json.loads(envelope["Message"])["detail"]["approval"] == {
        "outcome": "Approved",
        "reviewer": "qa-lead",
        "comment": "checked on staging",
    }
    assert context["ti"].xcom[DECISION_XCOM_KEY]["Reviewer"] == "qa-lead"


def test_form_rejection_fails_and_is_announced(topic_and_queue, hitl):
    topic, received = topic_and_queue
    context = make_context()
    operator = make(FormApprovalOperator, topic)
    start(operator, context)
    received()
    with pytest.raises(HITLRejectException, match="rejected by qa-lead: login broken"):
        operator.execute_complete(context, answer("Reject", "login broken"))
    assert subjects(received) == ["REJECTED: webapp Approval.SignOff by qa-lead (run manual__1)"]


def test_a_form_answered_as_the_run_was_superseded_keeps_the_answer(topic_and_queue, hitl):
    """The trigger's event won the race to resume the task; the reviewer's answer is what counts."""
    topic, received = topic_and_queue
    context = make_context()
    operator = make(FormApprovalOperator, topic)
    start(operator, context)
    received()
    response = answer("Approve", "just in time")
    hitl["response"] = SimpleNamespace(response_received=True, **response)
    outputs = operator.execute_complete(context, {"kind": "superseded", "superseded_by": "manual__2"})
    assert outputs["Outcome"] == "Approved" and outputs["Comment"] == "just in time"
    assert subjects(received) == ["APPROVED: webapp Approval.SignOff by qa-lead (run manual__1)"]


def test_form_superseded_and_timeout_end_the_wait_like_mark_mode(topic_and_queue, hitl):
    topic, received = topic_and_queue
    context = make_context()
    operator = make(FormApprovalOperator, topic)
    start(operator, context)
    with pytest.raises(ApprovalSuperseded, match="superseded by run manual__2"):
        operator.execute_complete(context, {"kind": "superseded", "superseded_by": "manual__2"})
    with pytest.raises(ApprovalTimedOut):
        make(FormApprovalOperator, topic).execute_complete(make_context(), {"kind": "timeout"})
