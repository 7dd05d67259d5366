"""CodePipeline-shaped SNS messages, published through the provider's SNS hook (moto)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.notifier import PipelineEventNotifier
from release_orchestrator.notifications.publishing import publish
from release_orchestrator.operators.codebuild import CodeBuildOperator
from release_orchestrator.operators.ecs import EcsDeployOperator
from release_orchestrator.operators.elasticbeanstalk import ElasticBeanstalkOperator
from release_orchestrator.operators.lambda_invoke import LambdaInvokeOperator
from release_orchestrator.operators.s3_deploy import S3DeployOperator
from release_orchestrator.operators.stepfunctions import StepFunctionsOperator
from tests.unit.fakes import FakeStateStore

WHERE = {"region_name": "us-east-1", "aws_domain": "aws.amazon.com"}  # what every link's persist stores


def failure_context(
    task_id="Build.Compile", exception="build FAILED in phase BUILD", operator=CodeBuildOperator, stored=None
):
    """A failure callback's context: the task (its declared links) and the XCom its links stored."""
    if stored is None:
        stored = {
            "_codebuild_build": {**WHERE, "build_id": "webapp-build:1234", "project_name": "webapp-build"},
            "_codebuild_logs": {**WHERE, "log_group": "/aws/codebuild/webapp-build", "log_stream": "1234"},
        }
    ti = SimpleNamespace(task_id=task_id, xcom_pull=lambda task_ids, key: stored.get(key))
    task = SimpleNamespace(operator_extra_links=operator.operator_extra_links)
    return {"run_id": "manual__1", "ti": ti, "task": task, "exception": RuntimeError(exception)}


def test_action_failure_message_names_everything(topic_and_queue):
    topic, received = topic_and_queue
    notifier = PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic)
    notifier.notify(failure_context())
    [envelope] = received()
    assert envelope["Subject"] == "FAILED: action Build.Compile of pipeline webapp-release (run manual__1)"
    event = json.loads(envelope["Message"])
    assert event["detail-type"] == "CodePipeline Action Execution State Change"
    detail = event["detail"]
    assert (detail["pipeline"], detail["execution-id"], detail["stage"], detail["action"], detail["state"]) == (
        "webapp-release",
        "manual__1",
        "Build",
        "Compile",
        "FAILED",
    )
    assert "phase BUILD" in detail["error-summary"]
    assert detail["aws-console-link"] == (
        "https://console.aws.amazon.com/codesuite/codebuild/projects/webapp-build/build/webapp-build%3A1234/"
        "?region=us-east-1"
    )
    assert detail["airflow-log-link"].endswith("/dags/webapp-release/runs/manual__1/tasks/Build.Compile")


CONSOLE = "https://console.aws.amazon.com"


@pytest.mark.parametrize(
    ("operator", "stored", "url"),
    [
        (
            EcsDeployOperator,
            {"cluster_name": "webapp", "service_name": "webapp-worker"},
            f"{CONSOLE}/ecs/v2/clusters/webapp/services/webapp-worker/deployments?region=us-east-1",
        ),
        (
            LambdaInvokeOperator,
            {"function_name": "site-smoke:live"},
            f"{CONSOLE}/lambda/home?region=us-east-1#/functions/site-smoke",
        ),
        (
            StepFunctionsOperator,
            {"execution_arn": "arn:aws:states:us-east-1:123456789012:execution:smoke:run-1"},
            f"{CONSOLE}/states/home?region=us-east-1#/v2/executions/details/"
            "arn%3Aaws%3Astates%3Aus-east-1%3A123456789012%3Aexecution%3Asmoke%3Arun-1",
        ),
        (
            ElasticBeanstalkOperator,
            {"environment_id": "e-abc123"},
            f"{CONSOLE}/elasticbeanstalk/home?region=us-east-1#/environment/dashboard?environmentId=e-abc123",
        ),
        (
            S3DeployOperator,
            {"bucket": "webapp-site", "prefix": "site/"},
            f"{CONSOLE}/s3/buckets/webapp-site?region=us-east-1&prefix=site%2F",
        ),
    ],
)
def test_a_failure_links_the_console_page_its_operator_declares(topic_and_queue, operator, stored, url):
    topic, received = topic_and_queue
    [link] = operator.operator_extra_links
    context = failure_context("Deploy.Site", operator=operator, stored={link.key: {**WHERE, **stored}})
    PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic).notify(context)
    [envelope] = received()
    assert json.loads(envelope["Message"])["detail"]["aws-console-link"] == url


def test_a_failure_before_the_link_was_stored_has_no_console_link(topic_and_queue):
    topic, received = topic_and_queue
    context = failure_context("Deploy.Worker", operator=EcsDeployOperator, stored={})
    PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic).notify(context)
    [envelope] = received()
    assert "aws-console-link" not in json.loads(envelope["Message"])["detail"]


def test_pipeline_failed_names_the_failed_stage(topic_and_queue):
    topic, received = topic_and_queue
    PipelineEventNotifier(event="pipeline-failed", pipeline="webapp-release", target_arn=topic).notify(
        failure_context("Deploy.ECS")
    )
    [envelope] = received()
    event = json.loads(envelope["Message"])
    assert event["detail-type"] == "CodePipeline Pipeline Execution State Change"
    assert event["detail"]["state"] == "FAILED"
    assert event["detail"]["failed-stage"] == "Deploy" and event["detail"]["failed-action"] == "ECS"
    assert envelope["Subject"].startswith("FAILED: pipeline webapp-release at Deploy.ECS")


def test_a_rollback_runs_events_say_so_and_name_the_run_it_rolled_back_to(topic_and_queue):
    topic, received = topic_and_queue
    notifier = PipelineEventNotifier(event="pipeline-succeeded", pipeline="webapp-release", target_arn=topic)
    conf = {"rollback": {"stage": "Deploy", "target_run_id": "manual__0", "held_by": "manual__1"}}
    notifier.notify({"run_id": "rollback__Deploy__manual__1__1", "dag_run": SimpleNamespace(conf=conf)})
    notifier.notify({"run_id": "manual__2", "dag_run": SimpleNamespace(conf={"flavour": "full"})})
    details = {d["execution-type"]: d for d in (json.loads(e["Message"])["detail"] for e in received())}
    rollback, standard = details["ROLLBACK"], details["STANDARD"]
    assert rollback["execution-type"] == "ROLLBACK"
    assert rollback["execution-trigger"] == {"trigger-type": "AutomatedRollback"}
    assert rollback["rollback-metadata"] == {"rollback-target-pipeline-execution": "manual__0", "stage": "Deploy"}
    assert standard["execution-type"] == "STANDARD" and "rollback-metadata" not in standard


def test_a_task_ended_by_its_trigger_reports_the_reason_from_its_xcom(topic_and_queue):
    """Airflow passes no exception to callbacks of tasks failed by their trigger (TaskFailedEvent)."""
    topic, received = topic_and_queue
    context = failure_context()
    del context["exception"]
    stored = {"failure_reason": "Build webapp-build:1234 FAILED in phase BUILD: exit 2"}
    context["ti"] = SimpleNamespace(task_id="Build.Compile", xcom_pull=lambda task_ids, key: stored.get(key))
    PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic).notify(context)
    [envelope] = received()
    assert json.loads(envelope["Message"])["detail"]["error-summary"] == stored["failure_reason"]


def test_an_approval_its_trigger_ended_as_superseded_is_not_a_failed_action(topic_and_queue):
    topic, received = topic_and_queue
    stored = {"approval_decision": {"Outcome": "Superseded", "SupersededBy": "run-2"}}
    context = {
        "run_id": "run-1",
        "ti": SimpleNamespace(task_id="Approval.SignOff", xcom_pull=lambda task_ids, key: stored.get(key)),
    }
    PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic).notify(context)
    assert received() == []


def test_unknown_event_is_refused():
    with pytest.raises(ValueError, match="unknown notification event 'pipeline-exploded'"):
        PipelineEventNotifier(event="pipeline-exploded", pipeline="p", target_arn="arn:aws:sns:us-east-1:1:t")


def test_a_failing_publish_is_retried_then_logged_not_raised(caplog, monkeypatch):
    monkeypatch.setattr("release_orchestrator.notifications.publishing.time.sleep", lambda s: None)
    calls = []

    class BrokenHook:
        def publish_to_target(self, **kwargs):
            calls.append(kwargs)
            raise ConnectionError("SNS unreachable")

    assert publish(BrokenHook(), "arn:aws:sns:us-east-1:1:t", "subject", {"a": 1}) is False
    assert len(calls) == 3
    assert "SNS publish to arn:aws:sns:us-east-1:1:t failed after 3 attempts" in caplog.text


def test_times_are_iso_8601_utc_with_z_as_codepipeline_writes_them():
    event = messages.state_change_event(level="pipeline", pipeline="p", execution_id="r", state="STARTED", region="")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", messages.now_iso())


def test_subject_is_sns_safe():
    assert messages.subject("a\nb") == "a b"
    assert len(messages.subject("x" * 300)) == 100
    assert messages.subject("déployé") == "d?ploy?"


# ---- exactly once ----------------------------------------------------------------------------------
def started_context(store):
    ti = SimpleNamespace(task_id="Source.Checkout", xcom_pull=lambda task_ids, key: None)
    return {"run_id": "manual__1", "ti": ti, "task_state_store": store}


def test_pipeline_started_is_published_once_per_run_however_often_the_callback_runs(topic_and_queue):
    """on_execute_callback runs on every try and on every resumption after a deferral."""
    topic, received = topic_and_queue
    notifier = PipelineEventNotifier(event="pipeline-started", pipeline="webapp-release", target_arn=topic)
    store = FakeStateStore()
    for _ in range(3):
        notifier.notify(started_context(store))
    [envelope] = received()
    assert envelope["Subject"] == "STARTED: pipeline webapp-release (run manual__1)"
    assert "pipeline-started" in store.data["release_notifications_sent"]


def test_an_event_whose_publish_failed_is_published_by_the_next_try(topic_and_queue, monkeypatch):
    topic, received = topic_and_queue
    monkeypatch.setattr("release_orchestrator.notifications.publishing.time.sleep", lambda s: None)
    notifier = PipelineEventNotifier(event="pipeline-started", pipeline="webapp-release", target_arn=topic)
    store = FakeStateStore()
    real = type(notifier.hook).publish_to_target
    monkeypatch.setattr(
        type(notifier.hook), "publish_to_target", lambda self, **kw: (_ for _ in ()).throw(ConnectionError("SNS down"))
    )
    notifier.notify(started_context(store))
    assert store.data == {}
    monkeypatch.setattr(type(notifier.hook), "publish_to_target", real)
    notifier.notify(started_context(store))
    notifier.notify(started_context(store))
    assert len(received()) == 1


# ---- superseded runs are not failures ----------------------------------------------------------------
def test_a_superseded_approval_is_not_reported_as_a_failed_action(topic_and_queue):
    from release_orchestrator.operators.approval import ApprovalSuperseded

    topic, received = topic_and_queue
    for event in ("action-failed", "stage-failed"):
        notifier = PipelineEventNotifier(event=event, pipeline="webapp-release", target_arn=topic)
        context = failure_context("Approval.SignOff")
        context["exception"] = ApprovalSuperseded(
            "approval Approval.SignOff: superseded by run manual__2", superseded_by="manual__2"
        )
        notifier.notify(context)
    assert received() == []


def test_a_superseded_run_is_not_reported_as_a_failed_pipeline(topic_and_queue):
    topic, received = topic_and_queue
    decisions = {"Approval.SignOff": {"Outcome": "Superseded", "SupersededBy": "manual__2"}}
    ti = SimpleNamespace(
        task_id="Approval.SignOff",
        xcom_pull=lambda task_ids, key: decisions.get(task_ids) if key == "approval_decision" else None,
    )
    notifier = PipelineEventNotifier(
        event="pipeline-failed", pipeline="webapp-release", target_arn=topic, superseding_task_ids=["Approval.SignOff"]
    )
    notifier.notify({"run_id": "manual__1", "ti": ti, "reason": "task_failure"})
    assert received() == []
    decisions["Approval.SignOff"] = {"Outcome": "Rejected"}
    notifier.notify({"run_id": "manual__1", "ti": ti, "reason": "task_failure"})
    assert [m["Subject"] for m in received()] == ["FAILED: pipeline webapp-release at Approval.SignOff (run manual__1)"]


# ---- decisions by marking that the trigger could not announce ----------------------------------------
def decision_context(xcoms, clear_number=0):
    ti = SimpleNamespace(
        dag_id="webapp-release", task_id="Approval.SignOff", xcom_pull=lambda task_ids, key: xcoms.get((task_ids, key))
    )
    return {"run_id": "manual__1", "ti": ti, "dag_run": SimpleNamespace(run_id="manual__1", clear_number=clear_number)}


def decision_notifier(topic):
    from release_orchestrator.notifications.approvals import ApprovalDecisionNotifier, ApprovalNotifications

    notifier = ApprovalDecisionNotifier(
        ApprovalNotifications(
            pipeline="webapp-release",
            topic_arn=topic,
            region_name="us-east-1",
            events=["approval-approved", "approval-rejected"],
        ),
        ["Approval.SignOff", "Approval.Security"],
    )
    notifier.GRACE_SECONDS = 0.3
    notifier.GRACE_POLL_SECONDS = 0.1
    return notifier


MARKED = {"DecidedBy": "mark", "Reviewer": "qa-lead", "Comment": "staging is broken", "Announced": False}


def test_the_end_of_the_run_announces_a_marked_decision_nobody_announced(topic_and_queue):
    topic, received = topic_and_queue
    xcoms = {
        ("Approval.SignOff", "approval_wait"): {"clear_number": 0},
        ("Approval.SignOff", "approval_decision"): {**MARKED, "Outcome": "Rejected"},
        ("Approval.Security", "approval_wait"): {"clear_number": 0},
        ("Approval.Security", "approval_decision"): {**MARKED, "Outcome": "Approved", "Announced": True},
    }
    decision_notifier(topic)(decision_context(xcoms))
    [envelope] = received()
    assert envelope["Subject"] == "REJECTED: webapp-release Approval.SignOff by qa-lead (run manual__1)"
    approval = json.loads(envelope["Message"])["detail"]["approval"]
    assert (approval["outcome"], approval["reviewer"], approval["comment"]) == (
        "Rejected",
        "qa-lead",
        "staging is broken",
    )


def test_the_end_of_the_run_announces_no_decision_the_gate_did_not_record(topic_and_queue):
    """A run marked as a whole (Stopped), a form answer (the worker announces it), an earlier round."""
    topic, received = topic_and_queue
    xcoms = {
        ("Approval.SignOff", "approval_wait"): {"clear_number": 0},  # decided before the run was cleared
        ("Approval.SignOff", "approval_decision"): {**MARKED, "Outcome": "Approved"},
        ("Approval.Security", "approval_wait"): {"clear_number": 1},
        ("Approval.Security", "approval_decision"): {"Outcome": "Stopped", "Reason": "the run was marked success"},
    }
    decision_notifier(topic)(decision_context(xcoms, clear_number=1))
    assert received() == []


def test_the_end_of_the_run_waits_briefly_for_the_triggerer_to_announce_the_decision(topic_and_queue):
    """The triggerer announces a marked decision a few seconds after it was made; no second message."""
    topic, received = topic_and_queue
    xcoms = {
        ("Approval.SignOff", "approval_wait"): {"clear_number": 0},
        ("Approval.SignOff", "approval_decision"): {**MARKED, "Outcome": "Approved"},
    }
    looks = []

    def xcom_pull(task_ids, key):
        if key == "approval_decision" and task_ids == "Approval.SignOff":
            looks.append(task_ids)
            if len(looks) == 2:  # announced while the callback waits
                xcoms[(task_ids, key)] = {**MARKED, "Outcome": "Approved", "Announced": True}
        return xcoms.get((task_ids, key))

    context = decision_context(xcoms)
    context["ti"].xcom_pull = xcom_pull
    decision_notifier(topic)(context)
    assert received() == []
    assert len(looks) >= 2


# ---- failure events published by the trigger that fails the task ----------------------------------
class TriggerTI:
    """The task instance a trigger sees, with XCom kept in a dict (the Task SDK in the triggerer)."""

    dag_id, task_id, run_id, map_index = "webapp-release", "Build.Compile", "manual__1", -1

    def __init__(self):
        self.xcoms = {}


def test_the_trigger_publishes_the_failure_once_and_the_callback_then_does_not(topic_and_queue, sdk_xcoms):
    from release_orchestrator.notifications.notifier import announce_failure

    topic, received = topic_and_queue
    notifiers = [
        PipelineEventNotifier(event=e, pipeline="webapp-release", target_arn=topic)
        for e in ("action-failed", "stage-failed")
    ]
    reason = "Build webapp-build:1 FAILED in phase BUILD"
    announce_failure([n.to_dict() for n in notifiers], TriggerTI(), reason)
    announce_failure([n.to_dict() for n in notifiers], TriggerTI(), reason)  # the trigger run again
    envelopes = received()
    assert sorted(e["Subject"].split(":")[1].split(" of")[0].strip() for e in envelopes) == [
        "action Build.Compile",
        "stage Build",
    ]
    assert {json.loads(e["Message"])["detail"]["error-summary"] for e in envelopes} == {reason}
    assert set(sdk_xcoms[("Build.Compile", "failure_notices")]) == {"action-failed", "stage-failed"}

    # Airflow then runs the task's failure callbacks in the dag-processor: they find the record.
    ti = SimpleNamespace(task_id="Build.Compile", xcom_pull=lambda task_ids, key: sdk_xcoms.get((task_ids, key)))
    for notifier in notifiers:
        notifier.notify({"run_id": "manual__1", "ti": ti})
    assert received() == []


def test_only_the_last_try_hands_its_failure_events_to_the_trigger(topic_and_queue):
    from release_orchestrator.notifications.notifier import failure_notices

    topic, _ = topic_and_queue
    notifier = PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic)
    operator = SimpleNamespace(on_failure_callback=[notifier], retries=2)
    assert failure_notices(operator, {"ti": SimpleNamespace(try_number=1, max_tries=2)}) is None
    notice = {**notifier.to_dict(), "console_links": []}  # this operator declares no console link
    assert failure_notices(operator, {"ti": SimpleNamespace(try_number=3, max_tries=2)}) == [notice]
    no_retries = SimpleNamespace(on_failure_callback=[notifier], retries=0)
    assert failure_notices(no_retries, {"ti": SimpleNamespace(try_number=1, max_tries=0)}) == [notice]


def test_the_trigger_links_the_console_page_the_operator_declared_when_it_deferred(topic_and_queue, sdk_xcoms):
    from release_orchestrator.notifications.notifier import announce_failure, failure_notices

    topic, received = topic_and_queue
    notifier = PipelineEventNotifier(event="action-failed", pipeline="webapp-release", target_arn=topic)
    operator = SimpleNamespace(
        on_failure_callback=[notifier], retries=0, operator_extra_links=EcsDeployOperator.operator_extra_links
    )
    # Worked out in the worker as the task defers; the trigger has no operator, only these notices.
    notices = failure_notices(operator, {"ti": SimpleNamespace(try_number=1, max_tries=0)})
    sdk_xcoms[("Build.Compile", "_ecs_service_deployments")] = {
        **WHERE,
        "cluster_name": "webapp",
        "service_name": "webapp-worker",
    }
    announce_failure(json.loads(json.dumps(notices)), TriggerTI(), "deployment failed")  # as trigger kwargs
    [envelope] = received()
    assert json.loads(envelope["Message"])["detail"]["aws-console-link"] == (
        f"{CONSOLE}/ecs/v2/clusters/webapp/services/webapp-worker/deployments?region=us-east-1"
    )
