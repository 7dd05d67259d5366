"""The approval gate in the api-server: every REST and UI path that decides an approval meets it.

`ApprovalGateMiddleware` (a root middleware of the api-server, registered by the plugin) notes, for
each changing request to Airflow's REST API (`/api/v2`) and UI (`/ui`), who makes it. A SQLAlchemy
`before_flush` hook then looks at what that request is about to write:

- an approval task instance moving to success or failed (marking it, in bulk, as part of a task
  group, as "downstream" of an earlier task): a decision;
- its form (HITL detail) being answered: a decision;
- its `approval_wait` / `approval_decision` / outputs XComs being written by a user: refused always;
- a transition's Variable (stages/transitions.py) being created, changed or deleted: refused always
  (only the release console's API, outside `/api/v2` and `/ui`, writes them, recording who);
- a deferred task instance moving to failed or skipped: its trigger's work (a build, a deployment...) is
  stopped once the transaction commits (gate/abandon.py), also when the triggerer never started it.

A decision by someone who may not decide (gate/policy.py) raises HTTP 403: the transaction rolls
back, so the approval keeps waiting; the refusal goes to Airflow's audit log (event
`approval.refused`, with the user, the path and the reason) in a transaction of its own. An allowed
decision by marking is recorded in the same transaction as the state change: `approval_decision`
(who, when, outcome, comment = the note, path), the action's outputs (`Outcome`, `Reviewer`,
`Comment`, `DecidedAt`) and an audit log entry `approval.approved` / `approval.rejected`.

Marking the whole run success or failed (PATCH .../dagRuns/{run_id}) ends a waiting approval without
deciding it: it is recorded as `Stopped`, and the actions after it are skipped by Airflow (and would
refuse to run if cleared, see policy.ApprovalsRequired).

Requests from workers (`/execution`) and the scheduler, triggerer and dag processor (no request)
are not users' decisions and pass untouched.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from release_orchestrator.gate import abandon
from release_orchestrator.gate.policy import APPROVAL_OPERATORS, Reviewer, refusal, run_authors
from release_orchestrator.notifications.messages import now_iso
from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY, WAIT_XCOM_KEY

log = logging.getLogger(__name__)

CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GUARDED_PREFIXES = ("/api/v2/", "/ui/")
RUN_MARK_PATH = re.compile(r"^/api/v2/dags/[^/]+/dagRuns/[^/]+/?$")
PROTECTED_XCOM_KEYS = frozenset({WAIT_XCOM_KEY, DECISION_XCOM_KEY, "return_value"})
DECISION_STATES = {"success": "Approved", "failed": "Rejected"}


@dataclass(frozen=True)
class UserRequest:
    method: str
    path: str
    reviewer: Reviewer | None

    @property
    def where(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def marks_whole_run(self) -> bool:
        return self.method == "PATCH" and bool(RUN_MARK_PATH.match(self.path))


_current: ContextVar[UserRequest | None] = ContextVar("release_orchestrator_user_request", default=None)


# ---- the request side --------------------------------------------------------------------------
async def _reviewer(scope: dict[str, Any]) -> Reviewer | None:
    """The signed-in user, read the way Airflow's own `get_user` does: bearer token, then the cookie."""
    from http.cookies import SimpleCookie

    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
    token = None
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        token = credentials.strip()
    elif "cookie" in headers:
        cookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:  # noqa: BLE001 - a malformed cookie is no identity
            return None
        if COOKIE_NAME_JWT_TOKEN in cookie:
            token = cookie[COOKIE_NAME_JWT_TOKEN].value
    if not token:
        return None
    try:
        return Reviewer.of(await get_auth_manager().get_user_from_token(token))
    except Exception:  # noqa: BLE001 - Airflow's own check answers 401/403 for this request
        return None


def route_path(scope: dict[str, Any]) -> str:
    """The request's path inside Airflow: without the path Airflow is served under (`[api] base_url`
    https://host/airflow: the api-server's root_path), which requests carry. Matching the full path would
    let every request under such a base URL past the gate."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        return path[len(root.rstrip("/")) :] or "/"
    return path


class ApprovalGateMiddleware:
    """Root ASGI middleware of the api-server: who makes each changing REST/UI request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        install()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = route_path(scope)
        if scope.get("type") != "http" or scope.get("method") not in CHANGING_METHODS:
            return await self.app(scope, receive, send)
        if not path.startswith(GUARDED_PREFIXES):
            return await self.app(scope, receive, send)
        token = _current.set(UserRequest(scope["method"], path, await _reviewer(scope)))
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)


@contextmanager
def marking_whole_run(dag_id: str, run_id: str, reviewer: Reviewer) -> Iterator[None]:
    """Within this block, the database writes are `reviewer` marking the whole run (the console's stop,
    ui/operations.py): a waiting approval is recorded as `Stopped`, exactly as for PATCH .../dagRuns/{run_id}."""
    token = _current.set(UserRequest("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", reviewer))
    try:
        yield
    finally:
        _current.reset(token)


# ---- the database side -------------------------------------------------------------------------
def install() -> None:
    """Hook the flush and the ORM statements of every session in this process (idempotent)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if not event.contains(Session, "before_flush", _before_flush):
        event.listen(Session, "before_flush", _before_flush)
    if not event.contains(Session, "do_orm_execute", _before_statement):
        event.listen(Session, "do_orm_execute", _before_statement)
    abandon.install()


def _before_statement(state: Any) -> None:
    """INSERT / UPDATE / DELETE statements on Variables (Airflow's Variables API writes some that way,
    not through the flush): refused when they touch a transition's Variable."""
    request = _current.get()
    if request is None or not (state.is_insert or state.is_update or state.is_delete):
        return
    from airflow.models.variable import Variable
    from sqlalchemy import select

    if state.bind_mapper is None or state.bind_mapper.class_ is not Variable:
        return
    statement = state.statement
    if state.is_insert:
        keys = [statement.compile(dialect=state.session.get_bind().dialect).params.get("key")]
    else:
        where = statement.whereclause
        query = select(Variable.key) if where is None else select(Variable.key).where(where)
        keys = list(state.session.execute(query).scalars())
    _refuse_transition_keys(request, keys)


def _refuse_transition_keys(request: UserRequest, keys: list[Any]) -> None:
    from release_orchestrator.stages.transitions import is_transition_key

    if touched := [key for key in keys if is_transition_key(key)]:
        why = (
            f"Variable {touched[0]!r} is a transition's record: enable or disable the transition through "
            "PUT /releases/api/pipelines/{dag_id}/transitions/{stage}, which records who did it"
        )
        _refuse(request, None, None, None, why, event="transition.refused")


def _before_flush(session: Any, flush_context: Any, instances: Any) -> None:
    request = _current.get()
    if request is None:
        return
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel

    variables = [obj for obj in [*session.new, *session.dirty, *session.deleted] if isinstance(obj, Variable)]
    _refuse_transition_keys(request, [obj.key for obj in variables])
    marked_runs = set()
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, TaskInstance):
            new_state = _changed_to(obj, "state")
            if request.marks_whole_run and getattr(new_state, "value", new_state) in ("failed", "skipped"):
                marked_runs.add((obj.dag_id, obj.run_id))  # marked failed (marking it successful fails none)
            if new_state is not None:  # a waiting action abandoned: its work is stopped after the commit
                abandon.note_if_abandoned(session, obj, _committed_state(obj), getattr(new_state, "value", new_state))
            if obj.operator in APPROVAL_OPERATORS and new_state is not None:
                _state_change(session, request, obj, getattr(new_state, "value", new_state))
        elif isinstance(obj, HITLDetail):
            if _changed_to(obj, "responded_by") is not None:
                ti = session.get(TaskInstance, obj.ti_id)
                if ti is not None and ti.operator in APPROVAL_OPERATORS:
                    _check(session, request, ti, "answer the form of")
                    # The answer resumes the task, which records the outputs; the trail is written here.
                    outcome = "approved" if list(obj.chosen_options or []) == ["Approve"] else "rejected"
                    _audit(session, f"approval.{outcome}", ti, request, f"{outcome} in the form by {_who(request)}")
        elif isinstance(obj, XComModel) and obj.key in PROTECTED_XCOM_KEYS:
            if obj.key != "return_value" or _is_approval(session, obj):
                _refuse(
                    request,
                    obj.dag_id,
                    obj.run_id,
                    obj.task_id,
                    f"XCom {obj.key!r} of approval {obj.task_id} is written only by the approval itself",
                )
    for dag_id, run_id in marked_runs:
        _end_pending_rollbacks(session, dag_id, run_id)


def _end_pending_rollbacks(session: Any, dag_id: str, run_id: str) -> None:
    """A run marked failed as a whole (the UI, the REST API, the console's stop) does not roll back: its
    `<Stage>.Rollback` tasks not started yet are skipped, and the run is set failed here. Airflow leaves a
    run with a teardown still to run unset, to be decided later from its last tasks, which the marking
    skipped: the run would end successful."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    from release_orchestrator.stages.rollback import ROLLBACK_TASK

    with session.no_autoflush:
        pending = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id.like(f"%.{ROLLBACK_TASK}"),
                TaskInstance.operator == "StageRollbackOperator",
                (TaskInstance.state.is_(None)) | (TaskInstance.state.in_(("scheduled", "queued", "up_for_retry"))),
            )
        ).all()
        if not pending:
            return
        now = datetime.now(timezone.utc)
        for ti in pending:
            ti.state, ti.start_date, ti.end_date = TaskInstanceState.SKIPPED, ti.start_date or now, now
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is not None and run.state in (DagRunState.QUEUED, DagRunState.RUNNING):
            run.state, run.end_date = DagRunState.FAILED, now


def _changed_to(obj: Any, attribute: str) -> Any:
    from sqlalchemy import inspect

    history = inspect(obj).attrs[attribute].history
    return history.added[0] if history.added else None


def _is_approval(session: Any, xcom: Any) -> bool:
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    operator = session.scalar(
        select(TaskInstance.operator).where(
            TaskInstance.dag_id == xcom.dag_id,
            TaskInstance.run_id == xcom.run_id,
            TaskInstance.task_id == xcom.task_id,
        )
    )
    return operator in APPROVAL_OPERATORS


def _state_change(session: Any, request: UserRequest, ti: Any, new_state: str) -> None:
    outcome = DECISION_STATES.get(new_state)
    if outcome is None:
        return  # cleared, skipped, ...: not a decision; the approval waits again or is skipped
    if request.marks_whole_run:
        _record(session, ti, {"Outcome": "Stopped", "Reason": f"the run was marked {new_state}", "By": _who(request)})
        _audit(session, "approval.stopped", ti, request, f"run marked {new_state}; approval not decided")
        return
    wait = _check(session, request, ti, "approve" if outcome == "Approved" else "reject")
    reviewer = request.reviewer
    assert reviewer is not None  # _check refuses anonymous decisions
    note = ti.task_instance_note.content if getattr(ti, "task_instance_note", None) is not None else ""
    outputs = {"Outcome": outcome, "Reviewer": reviewer.name, "Comment": note or "", "DecidedAt": now_iso()}
    decision = {**outputs, "DecidedBy": "mark", "Path": request.where, "Wait": wait.get("wait"), "Announced": False}
    _record(session, ti, decision)
    _write_xcom(session, ti, "return_value", outputs)
    _audit(session, f"approval.{outcome.lower()}", ti, request, f"{outcome} by {reviewer.name}")


def _check(session: Any, request: UserRequest, ti: Any, verb: str) -> dict[str, Any]:
    """The approval's wait record, if the request's user may decide it; else refuse."""
    wait = _read_xcom(session, ti, WAIT_XCOM_KEY)
    before = _committed_state(ti)
    if not isinstance(wait, dict) or before not in ("deferred", "awaiting_input"):
        # Marking a task that has not started waiting would skip the approval altogether.
        why = f"cannot {verb} approval {ti.task_id}: it is not waiting for a decision (it is {before or 'not started'})"
        _refuse(request, ti.dag_id, ti.run_id, ti.task_id, why, wait if isinstance(wait, dict) else None)
    run = ti.dag_run  # loaded with the task instance (a joined relationship)
    why = refusal(
        request.reviewer,
        task_id=ti.task_id,
        approvers=list(wait.get("approvers") or []),
        authors=run_authors(run.triggering_user_name, run.conf),
        allow_self_approval=bool(wait.get("allow_self_approval")),
    )
    if why:
        _refuse(request, ti.dag_id, ti.run_id, ti.task_id, why, wait)
    return wait


def _committed_state(ti: Any) -> str | None:
    """The state the task instance had before this request changed it."""
    from sqlalchemy import inspect

    history = inspect(ti).attrs["state"].history
    before = (history.deleted or history.unchanged or [None])[0]
    return getattr(before, "value", before)


def _who(request: UserRequest) -> str | None:
    return request.reviewer.name if request.reviewer else None


def _refuse(
    request: UserRequest,
    dag_id: str | None,
    run_id: str | None,
    task_id: str | None,
    why: str,
    wait: dict[str, Any] | None = None,
    event: str = "approval.refused",
) -> None:
    log.warning("Refused %s by %s: %s", request.where, _who(request) or "an unidentified user", why)
    _audit_apart(dag_id, run_id, task_id, request, why, event)
    if wait and wait.get("notifications"):
        _announce_refusal(wait["notifications"], run_id, task_id, request, why)
    from fastapi import HTTPException

    raise HTTPException(status_code=403, detail=why)


# ---- records -----------------------------------------------------------------------------------
def _read_xcom(session: Any, ti: Any, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    value = session.scalar(
        select(XComModel.value).where(
            XComModel.dag_id == ti.dag_id,
            XComModel.run_id == ti.run_id,
            XComModel.task_id == ti.task_id,
            XComModel.map_index == ti.map_index,
            XComModel.key == key,
        )
    )
    # Stored as the worker's serialized JSON text (the execution API), or as JSON by older writers.
    return XComModel.deserialize_value(SimpleNamespace(value=value)) if value is not None else None


def _write_xcom(session: Any, ti: Any, key: str, value: dict[str, Any]) -> None:
    from airflow.models.xcom import XComModel
    from sqlalchemy import delete

    where = (
        XComModel.dag_id == ti.dag_id,
        XComModel.run_id == ti.run_id,
        XComModel.task_id == ti.task_id,
        XComModel.map_index == ti.map_index,
        XComModel.key == key,
    )
    session.execute(delete(XComModel).where(*where))
    session.add(
        XComModel(
            dag_run_id=ti.dag_run.id,
            key=key,
            value=value,  # plain JSON, as the workers' Task SDK stores a dict of strings (serde)
            run_id=ti.run_id,
            task_id=ti.task_id,
            dag_id=ti.dag_id,
            map_index=ti.map_index,
        )
    )


def _record(session: Any, ti: Any, decision: dict[str, Any]) -> None:
    _write_xcom(session, ti, DECISION_XCOM_KEY, {"DecidedAt": now_iso(), **decision})


def _log_entry(event: str, dag_id: str, run_id: str, task_id: str, request: UserRequest, text: str) -> Any:
    from airflow.models.log import Log

    who = _who(request)
    return Log(
        event=event,
        owner=who,
        owner_display_name=who,
        extra=json.dumps({"path": request.where, "detail": text}),
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
    )


def _audit(session: Any, event: str, ti: Any, request: UserRequest, text: str) -> None:
    session.add(_log_entry(event, ti.dag_id, ti.run_id, ti.task_id, request, text))


def _announce_refusal(notifications: dict[str, Any], run_id: str, task_id: str, request: UserRequest, why: str) -> None:
    """approval-refused to the pipeline's topic, if it wants it; the refusal stands whatever SNS says."""
    from release_orchestrator.notifications.approvals import ApprovalNotifications, publish_refusal

    try:
        publish_refusal(
            ApprovalNotifications.from_dict(notifications),
            run_id=run_id,
            task_id=task_id,
            user=_who(request),
            reason=why,
            request=request.where,
        )
    except Exception:  # noqa: BLE001
        log.exception("Could not announce the refusal of %s", request.where)


def _audit_apart(
    dag_id: str | None, run_id: str | None, task_id: str | None, request: UserRequest, why: str, event: str
) -> None:
    """A refusal outlives the refused transaction: it is written in a session of its own."""
    from airflow.utils.session import create_session

    try:
        with create_session(scoped=False) as session:
            session.add(_log_entry(event, dag_id, run_id, task_id, request, why))
    except Exception:  # noqa: BLE001 - the refusal stands even if its record cannot be written
        log.exception("Could not record the refusal of %s in the audit log", request.where)
