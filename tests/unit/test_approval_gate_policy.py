"""The approval gate's rules: who may decide, who started a run, and the check later actions make.

The api-server side (the middleware and the database hook) runs in tests/integration/test_approval_gate.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.sdk.exceptions import AirflowFailException

from release_orchestrator.gate.policy import ApprovalsRequired, Reviewer, refusal, run_authors
from release_orchestrator.pipeline import compiler
from release_orchestrator.pipeline.api import action, pipeline, stage
from release_orchestrator.pipeline.errors import SpecError

TASK = "Approval.SignOff"


def reviewer(name: str, role: str | None = "user") -> Reviewer:
    return Reviewer.of(SimpleAuthManagerUser(username=name, role=role))


class FabLikeRole:
    def __init__(self, name):
        self.name = name


class FabLikeUser:
    """The shape of the FAB auth manager's user: an integer id and a list of role objects."""

    def __init__(self, user_id, username, roles):
        self.id, self.username, self.roles = user_id, username, [FabLikeRole(role) for role in roles]

    def get_id(self):
        return self.id

    def get_name(self):
        return self.username


def decide(who: Reviewer | None, approvers=(), authors=(), allow_self_approval=False) -> str | None:
    return refusal(
        who, task_id=TASK, approvers=list(approvers), authors=list(authors), allow_self_approval=allow_self_approval
    )


def test_an_approver_by_name_or_by_role_may_decide_and_nobody_else():
    approvers = ["qa-lead", "role:Release-Managers"]
    assert decide(reviewer("qa-lead"), approvers) is None
    assert decide(reviewer("QA-Lead"), approvers) is None  # names compare without case, as auth managers do
    fab = Reviewer.of(FabLikeUser(7, "dana", ["Viewer", "release-managers"]))
    assert fab == Reviewer(name="dana", roles=frozenset({"viewer", "release-managers"}))
    assert decide(fab, approvers) is None
    why = decide(reviewer("admin", role="admin"), approvers)
    assert why == "approval Approval.SignOff: admin is not among its approvers (qa-lead, role:Release-Managers)"
    assert "signed-in" in decide(None, approvers)


def test_without_approvers_anyone_who_may_change_the_task_decides_except_the_runs_author():
    assert decide(reviewer("anyone")) is None
    why = decide(reviewer("dana"), authors=["dana"])
    assert "dana started this run and cannot approve or reject it" in why
    assert "allow_self_approval: true" in why
    assert decide(reviewer("dana"), authors=["dana"], allow_self_approval=True) is None


def test_the_runs_author_is_refused_even_when_listed_as_an_approver():
    assert "started this run" in decide(reviewer("qa-lead"), ["qa-lead"], authors=["Qa-Lead"])
    assert decide(reviewer("qa-lead"), ["qa-lead"], authors=["Qa-Lead"], allow_self_approval=True) is None


def test_who_started_a_run_the_triggering_user_and_the_webhooks_people():
    conf = {"source": {"author": "dana", "pushed_by": "erin", "merged_by": 5, "branch": "main"}}
    assert run_authors("admin", conf) == ["admin", "dana", "erin"]
    assert run_authors(None, {"source": "not an object"}) == []
    assert run_authors("", None) == []


def test_actions_after_an_approval_run_only_when_it_was_approved():
    check = ApprovalsRequired([TASK, "Approval.Security"])
    decisions = {TASK: {"Outcome": "Approved"}}
    ti = SimpleNamespace(
        task_id="Deploy.Web", run_id="r2", xcom_pull=lambda task_ids, key, run_id: decisions.get(task_ids)
    )
    context = {"ti": ti, "dag_run": SimpleNamespace(run_id="r2", conf={})}
    with pytest.raises(AirflowFailException, match="approval Approval.Security was not approved in this run"):
        check(context)
    decisions["Approval.Security"] = {"Outcome": "Stopped"}
    with pytest.raises(AirflowFailException, match=r"\(its decision is Stopped\)"):
        check(context)
    decisions["Approval.Security"] = {"Outcome": "Approved"}
    check(context)


def test_a_rollback_run_needs_the_approvals_of_the_run_it_rolls_back_to():
    check = ApprovalsRequired([TASK])
    decisions = {("r1", TASK): {"Outcome": "Approved"}}
    ti = SimpleNamespace(
        task_id="Deploy.Web", run_id="rb", xcom_pull=lambda task_ids, key, run_id: decisions.get((run_id, task_ids))
    )
    rollback = {"rollback": {"stage": "Deploy", "target_run_id": "r1"}}
    check({"ti": ti, "dag_run": SimpleNamespace(run_id="rb", conf=rollback)})
    rollback["rollback"]["target_run_id"] = "r0"  # a run whose approval was rejected
    decisions[("r0", TASK)] = {"Outcome": "Rejected"}
    with pytest.raises(AirflowFailException, match="not approved in run r0, which this run rolls back to"):
        check({"ti": ti, "dag_run": SimpleNamespace(run_id="rb", conf=rollback)})


def gated(*stages, **fields):
    checkout = stage("Source", [action("Checkout", "source.github", repository="a/b", branch="main")])
    return pipeline("gated", stages=[checkout, *stages], **fields)


def test_the_compiler_puts_the_check_on_every_action_after_an_approval():
    dag = compiler.build_dag(
        gated(
            stage(
                "Approval",
                [action("SignOff", "approval.manual"), action("Security", "approval.manual", run_order=2)],
            ),
            stage("Deploy", [action("Confirm", "approval.manual")]),
            execution_mode="PARALLEL",  # no stage doors, whose check would come with it (test_stage_entry.py)
        )
    )
    required = {task_id: approvals_required(task) for task_id, task in dag.task_dict.items()}
    assert required["Source.Checkout"] is None and required["Approval.SignOff"] is None
    assert required["Approval.Security"] == ["Approval.SignOff"]
    assert required["Deploy.Confirm"] == ["Approval.SignOff", "Approval.Security"]


def approvals_required(task):
    hook = task._pre_execute_hook
    checks = getattr(hook, "checks", [hook])
    return next((check.approval_task_ids for check in checks if isinstance(check, ApprovalsRequired)), None)


@pytest.mark.parametrize(
    "approvers, message",
    [
        (["#{variables.APPROVER}"], "no references"),
        (["role:"], "names no role"),
        (["qa-lead", ""], "is not a user name"),
    ],
)
def test_approvers_are_literal_names_or_roles_in_the_spec(approvers, message):
    with pytest.raises(SpecError, match=message):
        gated(stage("Approval", [action("SignOff", "approval.manual", approvers=approvers)]), variables=["APPROVER"])


def test_allow_self_approval_reaches_the_operator():
    dag = compiler.build_dag(gated(stage("Approval", [action("SignOff", "approval.manual", allow_self_approval=True)])))
    assert dag.task_dict[TASK].allow_self_approval is True


def test_a_refused_decision_is_announced_to_the_pipelines_topic(topic_and_queue):
    import json

    from release_orchestrator.notifications.approvals import ApprovalNotifications, publish_refusal

    topic, received = topic_and_queue
    config = ApprovalNotifications(
        pipeline="webapp-release", topic_arn=topic, region_name="us-east-1", events=["approval-refused"]
    )
    why = "approval Approval.SignOff: admin is not among its approvers (qa-lead)"
    request = "PATCH /api/v2/dags/webapp-release/dagRuns/manual__1/taskInstances/Approval.SignOff"
    args = {"run_id": "manual__1", "task_id": TASK, "user": "admin", "reason": why, "request": request}
    assert publish_refusal(config, **args) is True
    [envelope] = received()
    assert envelope["Subject"] == "REFUSED: webapp-release Approval.SignOff: admin may not decide it"
    detail = json.loads(envelope["Message"])["detail"]
    assert (detail["state"], detail["stage"], detail["action"]) == ("REFUSED", "Approval", "SignOff")
    assert detail["refused"] == {"user": "admin", "reason": why, "request": request}
    config.events = ["approval-approved"]  # not wanted: nothing published
    assert publish_refusal(config, **args) is False
    assert received() == []
