"""Manual approvals in real Airflow processes: marking, the form, superseding, and their SNS messages.

Every run this module needs is started by one fixture at the beginning (they are independent), so
they progress in parallel while the tests look at them one after the other. Messages are read from
the session's shared SNS inbox and kept here, filtered by pipeline and run.

The approval timeout runs out for real: the environment lowers the shortest timeout a spec may set
(RELEASE_ORCHESTRATOR_APPROVAL_TIMEOUT_MIN_SECONDS, tests/integration/conftest.py), so ap-timeout's
approval times out in seconds rather than CodePipeline's 5 minutes.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import yaml

from include.localenv.airflow_api import AirflowAPI, AirflowAPIError
from release_orchestrator.notifications.approvals import RESULT_EVENTS
from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY
from tests.integration import helpers
from tests.integration.helpers import TEST_PIPELINES, task_log, wait_for, wait_for_run, wait_for_task_state

pytestmark = pytest.mark.integration

APPROVAL = "Approval.SignOff"
MARK, FORM, ONCE = "ap-mark", "ap-form", "ap-once"
SUPERSEDE, SUPERSEDE_FORM, TIMEOUT = "ap-supersede", "ap-supersede-form", "ap-timeout"
WAITING = {"deferred"}
TIMEOUT_TEXT = "0:00:15"  # ap-timeout.yaml's timeout, as the messages print it
# A run's end: the event a spec subscribes to, and the subject of its message.
RUN_END_MESSAGES = {"success": ("pipeline-succeeded", "SUCCEEDED"), "failed": ("pipeline-failed", "FAILED: pipeline")}
FINAL = {"success", "failed", "skipped", "upstream_failed", "removed"}


def push(label: str) -> dict:
    commit = hashlib.sha1(f"{label}-{time.time()}".encode()).hexdigest()
    return {
        "source": {
            "provider": "github",
            "repository": "acme/approvals",
            "branch": "main",
            "commit_id": commit,
            "commit_message": f"test {label}",
            "author": "Test Author",
        }
    }


class Mailbox(helpers.Mailbox):
    """Everything that arrived on the shared inbox since the module started, by pipeline and run."""

    def settled(self, api: AirflowAPI, pipeline: str, run_id: str) -> dict[str, int]:
        """Subjects (without the run-specific tail) and how often each arrived, once everything that announces
        something has done so: the run has ended and its last message arrived, every action has its final
        state, the approval's announced decision is recorded (its decision XCom, which the trigger, the worker
        and the run's end all check before publishing), and every message published until then is read."""
        run = wait_for_run(api, pipeline, run_id, timeout=180)
        wait_for(
            lambda: all(ti["state"] in FINAL for ti in api.task_instances(pipeline, run_id)),
            60,
            interval=0.5,
            what=f"every action of {pipeline} run {run_id} to end",
        )
        wait_for(
            lambda: decision_recorded(api, pipeline, run_id),
            60,
            interval=0.5,
            what=f"the recorded announcement of {pipeline} run {run_id}'s decision",
        )
        # A decision made by marking is announced by the approval's trigger when Airflow cancels it, or else
        # by the run's end callback up to 20 s after the run ended: wait for it, not only for its record.
        outcome = api.xcom(pipeline, run_id, APPROVAL, key=DECISION_XCOM_KEY).get("Outcome")
        if RESULT_EVENTS.get(outcome) in subscribed_events(pipeline):
            self.wait(pipeline, run_id, outcome.upper())
        if self.of(pipeline, run_id, "SUPERSEDED"):
            last = "SUPERSEDED"
        else:
            event, subject = RUN_END_MESSAGES[run["state"]]
            last = subject if event in subscribed_events(pipeline) else None
        if last:  # a DAG callback, published after the run ended
            self.wait(pipeline, run_id, last)
        counts: dict[str, int] = {}
        for message in self.of(pipeline, run_id):
            kind = message["Subject"].split(":", 1)[0] + (
                ":" + message["Subject"].split()[1] if message["Subject"].startswith("FAILED") else ""
            )
            counts[kind] = counts.get(kind, 0) + 1
        return counts


@pytest.fixture(scope="module")
def mailbox(inbox) -> Mailbox:
    return Mailbox(inbox)


@pytest.fixture(scope="module")
def runs(api, mailbox) -> dict[str, tuple[str, str]]:
    """Start every run of this module at once: name -> (pipeline, run id)."""
    pipelines = [MARK, FORM, ONCE, SUPERSEDE, SUPERSEDE_FORM, TIMEOUT]
    for pipeline in pipelines:
        api.wait_for_dag(pipeline, timeout=240)
    mailbox.collect()
    started = {}
    plan = [
        ("mark-approve", MARK),
        ("mark-reject", MARK),
        ("form-approve", FORM),
        ("form-reject", FORM),
        ("once", ONCE),
        ("supersede-old", SUPERSEDE),
        ("supersede-form-old", SUPERSEDE_FORM),
        ("timeout", TIMEOUT),
    ]
    for name, pipeline in plan:
        started[name] = (pipeline, api.trigger(pipeline, conf=push(name))["dag_run_id"])
    # The newer runs start once the older ones wait at their approval.
    for old, new in (("supersede-old", "supersede-new"), ("supersede-form-old", "supersede-form-new")):
        pipeline, run_id = started[old]
        wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
        started[new] = (pipeline, api.trigger(pipeline, conf=push(new))["dag_run_id"])
    return started


def subscribed_events(pipeline: str) -> list[str]:
    spec = yaml.safe_load((TEST_PIPELINES / f"{pipeline}.yaml").read_text())
    return spec["pipeline"]["notifications"]["events"]


def decision_recorded(api: AirflowAPI, pipeline: str, run_id: str) -> bool:
    try:
        return bool(api.xcom(pipeline, run_id, APPROVAL, key=DECISION_XCOM_KEY))
    except AirflowAPIError as err:
        if "HTTP 404" in str(err):
            return False
        raise


def approval_ti(api: AirflowAPI, pipeline: str, run_id: str) -> dict:
    return next(ti for ti in api.task_instances(pipeline, run_id) if ti["task_id"] == APPROVAL)


def wait_for_the_trigger(api: AirflowAPI, pipeline: str, run_id: str) -> None:
    """Until the triggerer runs the approval's wait (its log, which includes the trigger's, says so)."""
    wait_for(
        lambda: f"{APPROVAL}/-1/1 (ID" in (log := task_log(api, pipeline, run_id, APPROVAL)) and "starting" in log,
        timeout=180,
        interval=2,
        what=f"the triggerer to run the approval of {pipeline} run {run_id}",
    )


def answer_form(client: AirflowAPI, pipeline: str, run_id: str, option: str, comment: str) -> dict:
    return client.request(
        "PATCH",
        f"/dags/{pipeline}/dagRuns/{run_id}/taskInstances/{APPROVAL}/-1/hitlDetails",
        json={"chosen_options": [option], "params_input": {"comment": comment}},
    )


# ---- mode `mark` ------------------------------------------------------------------------------
def test_approve_by_marking_keeps_the_note_and_announces_it(api, reviewer_api, mailbox, runs):
    pipeline, run_id = runs["mark-approve"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    [needed] = mailbox.wait(pipeline, run_id, "APPROVAL NEEDED")
    assert needed["parsed"]["approval"]["actionName"] == "SignOff"
    assert needed["parsed"]["approval"]["customData"].startswith("Release ")

    wait_for_the_trigger(api, pipeline, run_id)
    reviewer_api.set_task_state(pipeline, run_id, APPROVAL, "success", note="Approved by qa-lead: looks good")
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "success"
    assert "qa-lead" in (approval_ti(api, pipeline, run_id).get("note") or "")

    [approved] = mailbox.wait(pipeline, run_id, "APPROVED")
    detail = approved["parsed"]["detail"]
    assert approved["parsed"]["detail-type"] == "CodePipeline Action Execution State Change"
    assert (detail["stage"], detail["action"], detail["state"]) == ("Approval", "SignOff", "SUCCEEDED")
    assert detail["type"]["category"] == "Approval"
    # Announced by the waiting trigger when Airflow cancelled it, not by the catch-up at the run's end.
    assert detail["approval"] == {
        "outcome": "Approved",
        "reviewer": "qa-lead",
        "comment": "Approved by qa-lead: looks good",
        "reason": "decided by marking the task",
    }
    outputs = api.xcom(pipeline, run_id, APPROVAL)  # recorded by the api-server's gate with the decision
    assert (outputs["Outcome"], outputs["Reviewer"], outputs["Comment"]) == (
        "Approved",
        "qa-lead",
        "Approved by qa-lead: looks good",
    )
    mailbox.wait(pipeline, run_id, "SUCCEEDED")
    assert mailbox.settled(api, pipeline, run_id) == {"STARTED": 1, "APPROVAL NEEDED": 1, "APPROVED": 1, "SUCCEEDED": 1}


def test_reject_by_marking_fails_the_run_and_announces_it(api, reviewer_api, mailbox, runs):
    pipeline, run_id = runs["mark-reject"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    wait_for_the_trigger(api, pipeline, run_id)
    reviewer_api.set_task_state(pipeline, run_id, APPROVAL, "failed", note="Rejected by qa-lead: broken login")
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "failed"
    assert "broken login" in (approval_ti(api, pipeline, run_id).get("note") or "")

    [rejected] = mailbox.wait(pipeline, run_id, "REJECTED")
    detail = rejected["parsed"]["detail"]
    assert detail["state"] == "FAILED"
    assert detail["approval"] == {
        "outcome": "Rejected",
        "reviewer": "qa-lead",
        "comment": "Rejected by qa-lead: broken login",
        "reason": "decided by marking the task",
    }
    [failed] = mailbox.wait(pipeline, run_id, "FAILED: pipeline")
    assert failed["parsed"]["detail"]["failed-action"] == "SignOff"
    counts = mailbox.settled(api, pipeline, run_id)
    assert counts == {"STARTED": 1, "APPROVAL NEEDED": 1, "REJECTED": 1, "FAILED:pipeline": 1}, counts


# ---- mode `form` ------------------------------------------------------------------------------
def test_form_refuses_users_who_are_not_approvers_then_the_approver_approves(
    airflow_env, api, reviewer_api, mailbox, runs
):
    pipeline, run_id = runs["form-approve"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    detail = api.request("GET", f"/dags/{pipeline}/dagRuns/{run_id}/taskInstances/{APPROVAL}/-1/hitlDetails")
    assert not detail["assigned_users"]  # the gate checks who answers, by name and role
    assert detail["response_received"] is False

    # admin may change any task, but is not among the approvers; developer is a viewer.
    developer = AirflowAPI(airflow_env.airflow_url, "developer", airflow_env.users["developer"])
    for client in (api, developer):
        with pytest.raises(AirflowAPIError, match="HTTP 403"):
            answer_form(client, pipeline, run_id, "Approve", f"{client.username} approves")
    assert approval_ti(api, pipeline, run_id)["state"] in WAITING

    response = answer_form(reviewer_api, pipeline, run_id, "Approve", "checked on staging")
    assert response["responded_by"]["name"] == "qa-lead"
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "success"
    outputs = api.xcom(pipeline, run_id, APPROVAL)
    assert (outputs["Outcome"], outputs["Reviewer"], outputs["Comment"]) == (
        "Approved",
        "qa-lead",
        "checked on staging",
    )

    [approved] = mailbox.wait(pipeline, run_id, "APPROVED")
    assert approved["Subject"].startswith(f"APPROVED: {pipeline} Approval.SignOff by qa-lead")
    decision = approved["parsed"]["detail"]["approval"]
    assert decision == {"outcome": "Approved", "reviewer": "qa-lead", "comment": "checked on staging"}
    mailbox.wait(pipeline, run_id, "SUCCEEDED")
    assert mailbox.settled(api, pipeline, run_id) == {"STARTED": 1, "APPROVAL NEEDED": 1, "APPROVED": 1, "SUCCEEDED": 1}


def test_form_rejection_fails_the_run_with_the_reviewers_comment(api, reviewer_api, mailbox, runs):
    pipeline, run_id = runs["form-reject"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    answer_form(reviewer_api, pipeline, run_id, "Reject", "login page broken")
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "failed"
    assert approval_ti(api, pipeline, run_id)["state"] == "failed"
    expected = "rejected by qa-lead: login page broken"
    assert expected in task_log(api, pipeline, run_id, APPROVAL, containing=(expected,))

    [rejected] = mailbox.wait(pipeline, run_id, "REJECTED")
    assert rejected["parsed"]["detail"]["approval"] == {
        "outcome": "Rejected",
        "reviewer": "qa-lead",
        "comment": "login page broken",
    }
    [action_failed] = mailbox.wait(pipeline, run_id, "FAILED: action")
    assert "rejected by qa-lead" in action_failed["parsed"]["detail"]["error-summary"]
    mailbox.wait(pipeline, run_id, "FAILED: pipeline")
    counts = mailbox.settled(api, pipeline, run_id)
    assert counts == {"STARTED": 1, "APPROVAL NEEDED": 1, "REJECTED": 1, "FAILED:action": 1, "FAILED:pipeline": 1}, (
        counts
    )


# ---- superseding --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "old, new", [("supersede-old", "supersede-new"), ("supersede-form-old", "supersede-form-new")], ids=["mark", "form"]
)
def test_a_newer_run_at_the_approval_supersedes_the_waiting_one(api, reviewer_api, mailbox, runs, old, new):
    pipeline, old_run = runs[old]
    _, new_run = runs[new]
    assert api.get_dag(pipeline)["max_active_runs"] > 1  # SUPERSEDED runs overlap

    assert wait_for_run(api, pipeline, old_run, timeout=240)["state"] == "failed"
    assert approval_ti(api, pipeline, old_run)["state"] == "failed"
    expected = f"superseded by run {new_run}"
    assert expected in task_log(api, pipeline, old_run, APPROVAL, containing=(expected,))
    # The newer run waited to enter the approval's stage (a SUPERSEDED stage holds one run at a time),
    # enters now that the older run has left it, and waits for its reviewer.
    wait_for_task_state(api, pipeline, new_run, APPROVAL, WAITING, timeout=120)

    [superseded] = mailbox.wait(pipeline, old_run, "SUPERSEDED")
    # SNS subjects stop at 100 characters; the message has the full run ids.
    assert superseded["Subject"].startswith(f"SUPERSEDED: pipeline {pipeline} (run {old_run}) by run ")
    detail = superseded["parsed"]["detail"]
    assert (detail["state"], detail["superseded-by"]) == ("SUPERSEDED", new_run)
    assert detail["reason"] == f"superseded by run {new_run}"
    # A superseded run is not reported as failed (nor its approval action).
    counts = mailbox.settled(api, pipeline, old_run)
    assert counts.get("SUPERSEDED") == 1 and counts.get("APPROVAL NEEDED") == 1, counts
    assert not any(kind.startswith("FAILED") for kind in counts), counts

    if old == "supersede-old":
        reviewer_api.set_task_state(pipeline, new_run, APPROVAL, "success", note="newest build approved")
    else:
        answer_form(reviewer_api, pipeline, new_run, "Approve", "newest build approved")
    assert wait_for_run(api, pipeline, new_run, timeout=180)["state"] == "success"
    mailbox.wait(pipeline, new_run, "APPROVED")
    counts = mailbox.settled(api, pipeline, new_run)
    assert counts.get("APPROVAL NEEDED") == 1 and counts.get("APPROVED") == 1, counts
    assert "SUPERSEDED" not in counts, counts


# ---- exactly once -------------------------------------------------------------------------------
def test_pipeline_started_is_published_once_for_a_first_action_that_defers(api, reviewer_api, mailbox, runs):
    """The first action (a build) defers; its trigger ends it in the triggerer, so it never resumes on a
    worker and its on_execute_callback (which announces the start) runs once."""
    pipeline, run_id = runs["once"]
    wait_for_task_state(api, pipeline, run_id, APPROVAL, WAITING, timeout=240)
    build_id = api.xcom(pipeline, run_id, "Build.Compile")["BuildId"]
    log = task_log(api, pipeline, run_id, "Build.Compile", containing=(f"Build {build_id} succeeded",))
    assert f"Build {build_id} succeeded" in log  # logged by the trigger that ended the task
    assert "Notification pipeline-started was already published" not in log
    reviewer_api.set_task_state(pipeline, run_id, APPROVAL, "success", note="ok")
    assert wait_for_run(api, pipeline, run_id, timeout=180)["state"] == "success"
    mailbox.wait(pipeline, run_id, "SUCCEEDED")
    assert mailbox.settled(api, pipeline, run_id) == {"STARTED": 1, "APPROVAL NEEDED": 1, "APPROVED": 1, "SUCCEEDED": 1}


# ---- timeout ------------------------------------------------------------------------------------
def test_timeout_rejects_the_approval(api, mailbox, runs):
    pipeline, run_id = runs["timeout"]
    assert wait_for_run(api, pipeline, run_id, timeout=240)["state"] == "failed"
    assert approval_ti(api, pipeline, run_id)["state"] == "failed"
    expected = f"nobody approved within {TIMEOUT_TEXT} (timeout)"
    assert expected in task_log(api, pipeline, run_id, APPROVAL, containing=(expected,))
    [rejected] = mailbox.wait(pipeline, run_id, "REJECTED")
    assert rejected["parsed"]["detail"]["approval"]["reason"] == f"timeout: nobody decided within {TIMEOUT_TEXT}"
    mailbox.wait(pipeline, run_id, "FAILED: pipeline")
    counts = mailbox.settled(api, pipeline, run_id)
    assert counts == {"APPROVAL NEEDED": 1, "REJECTED": 1, "FAILED:pipeline": 1}, counts
