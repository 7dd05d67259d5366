"""Who may decide an approval, and the check later actions make before they run.

Pure rules, shared by the api-server (enforcement.py) and the workers (`ApprovalsRequired`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY

ROLE_PREFIX = "role:"
# The operators of approval actions, as Airflow records them on the task instance (`operator`).
APPROVAL_OPERATORS = frozenset({"ManualApprovalOperator", "FormApprovalOperator"})


def _fold(value: Any) -> str:
    return str(value or "").strip().casefold()


@dataclass(frozen=True)
class Reviewer:
    """A signed-in Airflow user, as the auth manager describes them."""

    name: str
    roles: frozenset[str] = frozenset()

    @classmethod
    def of(cls, user: Any) -> Reviewer:
        """From the auth manager's user: the simple auth manager has one `role`, FAB a list of `roles`."""
        roles = {getattr(user, "role", None)}
        roles.update(getattr(role, "name", role) for role in (getattr(user, "roles", None) or []))
        return cls(
            name=str(user.get_name()),
            roles=frozenset(_fold(role) for role in roles if role),
        )

    def is_one_of(self, people: Iterable[str]) -> bool:
        # By name only: under FAB the id is a row number, which a name like "1" must not match.
        return any(_fold(person) == _fold(self.name) for person in people if person)


def run_authors(triggering_user: str | None, conf: Any) -> list[str]:
    """Who started a run: the user who triggered it, and the author the webhook or event named."""
    authors = [triggering_user] if triggering_user else []
    source = conf.get("source") if isinstance(conf, dict) else None
    if isinstance(source, dict):
        authors += [source[key] for key in ("author", "pushed_by", "merged_by") if isinstance(source.get(key), str)]
    return [author for author in authors if author.strip()]


def refusal(
    reviewer: Reviewer | None,
    *,
    task_id: str,
    approvers: list[str],
    authors: list[str],
    allow_self_approval: bool,
) -> str | None:
    """Why `reviewer` may not decide this approval; None when they may."""
    if reviewer is None:
        return f"approval {task_id}: only a signed-in approver can decide it"
    if not allow_self_approval and reviewer.is_one_of(authors):
        return (
            f"approval {task_id}: {reviewer.name} started this run and cannot approve or reject it "
            "(set allow_self_approval: true on the action to allow it)"
        )
    if not approvers:
        return None
    users = [entry for entry in approvers if not entry.startswith(ROLE_PREFIX)]
    roles = {_fold(entry[len(ROLE_PREFIX) :]) for entry in approvers if entry.startswith(ROLE_PREFIX)}
    if reviewer.is_one_of(users) or roles & reviewer.roles:
        return None
    return f"approval {task_id}: {reviewer.name} is not among its approvers ({', '.join(approvers)})"


class ApprovalsRequired:
    """`pre_execute` of every action after an approval: it runs only when those approvals were approved.

    The gate records every decision it lets through (and the form and the trigger record theirs) in
    the approval's `approval_decision` XCom. An approval task that is successful without such a record
    was moved there by some path outside the gate (the run marked as a whole, a direct database
    change): the action refuses to run rather than release an unapproved build.
    """

    def __init__(self, approval_task_ids: list[str]):
        self.approval_task_ids = list(approval_task_ids)

    def __call__(self, context: Any) -> None:
        from release_orchestrator.stages.rollback import results_run

        ti = context["ti"]
        for task_id in self.approval_task_ids:
            # A rollback run's approvals before its stage are those of the run it rolls back to.
            run_id = results_run(context, task_id)
            decision = ti.xcom_pull(task_ids=task_id, key=DECISION_XCOM_KEY, run_id=run_id)
            outcome = decision.get("Outcome") if isinstance(decision, dict) else None
            if outcome != "Approved":
                how = f"its decision is {outcome}" if outcome else "it has no recorded decision by an allowed approver"
                where = "this run" if run_id == ti.run_id else f"run {run_id}, which this run rolls back to"
                raise AirflowFailException(
                    f"{ti.task_id} does not run: approval {task_id} was not approved in {where} ({how})"
                )
