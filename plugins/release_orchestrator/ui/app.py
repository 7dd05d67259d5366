"""The release console: a page in Airflow's UI (a plugin external view) and the JSON it reads.

    GET /releases/                              the page (signed-in users; others are sent to Airflow's login)
    GET /releases/api/pipelines?runs=N          each pipeline's latest N runs, stage by stage
    GET /releases/api/pipelines/{dag_id}/runs   one pipeline's run history (offset, limit, state, started_by)
    GET /releases/api/approvals                 approvals waiting for a decision, with what they release
    GET /releases/api/metrics?days=30           DORA metrics per pipeline and overall
    GET /releases/api/pipelines/{dag_id}/transitions           each stage's transition: enabled, or who
                                                               disabled it, when and why
    PUT /releases/api/pipelines/{dag_id}/transitions/{stage}   {"enabled": false, "reason": "..."} or
                                                               {"enabled": true}: needs permission to edit the
                                                               pipeline (stages/transitions.py)
    POST /releases/api/pipelines/{dag_id}/runs/{run_id}/stages/{stage}/retry
                                                 {"mode": "FAILED_ACTIONS" | "ALL_ACTIONS"}: run a failed stage
                                                 again (needs permission to change task instances)
    POST /releases/api/pipelines/{dag_id}/runs/{run_id}/stop   {"reason": "...", "mode": "ABANDON" |
                                                 "STOP_AND_WAIT"}: abandon a run, or let its actions at work
                                                 finish and start nothing more (needs permission to change runs)
    POST /releases/api/pipelines/{dag_id}/stages/{stage}/rollback   {"reason": "...", "target_run_id": null}:
                                                 start a run that rolls the stage back to an earlier successful
                                                 run (needs permission to trigger runs; stages/rollback.py)

Plugin apps are anonymous unless they ask: every route here depends on Airflow's own `get_user` (the
session cookie the UI sets, or a bearer token) and shows only the pipelines the auth manager lets the
user read. Decisions are not made here: the page approves and rejects through Airflow's REST API, where
the approval gate (gate/enforcement.py) applies its rules to every path alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from typing import Annotated, Any, Literal

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from release_orchestrator.gate.policy import Reviewer, refusal
from release_orchestrator.stages import transitions
from release_orchestrator.ui import operations, queries

UI_URL_PREFIX = "/releases"
MAX_RUNS_PER_PIPELINE = 10
MAX_PAGE = 100
METRIC_WINDOWS = (30, 90)


def readable_pipelines(user: GetUserDep, session: SessionDep) -> list[str]:
    """The pipelines the signed-in user may read (the auth manager's per-DAG rules)."""
    return queries.pipeline_ids(session, get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


Pipelines = Annotated[list[str], Depends(readable_pipelines)]


def readable(dag_id: str, pipelines: list[str]) -> str:
    if dag_id not in pipelines:  # unknown and unreadable look the same: nothing to learn by probing
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pipeline {dag_id!r} you may read")
    return dag_id


class TransitionChange(BaseModel):
    enabled: bool
    reason: str | None = Field(None, max_length=transitions.MAX_REASON)


class RetryRequest(BaseModel):
    mode: Literal["FAILED_ACTIONS", "ALL_ACTIONS"] = "FAILED_ACTIONS"
    reason: str | None = Field(None, max_length=transitions.MAX_REASON)  # kept in the audit log


class RollbackRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=transitions.MAX_REASON, pattern=r"\S")
    target_run_id: str | None = Field(None, min_length=1, max_length=250)  # default: the latest that succeeded


class StopRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=transitions.MAX_REASON, pattern=r"\S")
    # ABANDON: stop the AWS work now; STOP_AND_WAIT: let the actions at work finish, start nothing more.
    mode: Literal["ABANDON", "STOP_AND_WAIT"] = "ABANDON"


@contextmanager
def refusals() -> Iterator[None]:
    """An operation that does not apply answers its status (404, 409) and why."""
    try:
        yield
    except operations.OperationRefused as refused:
        raise HTTPException(refused.status, str(refused)) from None


def may_change(user: Any, dag_id: str, entity: DagAccessEntity | None = None, method: str = "PUT") -> bool:
    """Whether the auth manager lets `user` change the pipeline itself (no `entity`), or its runs or task
    instances (POST on runs: trigger one)."""
    return get_auth_manager().is_authorized_dag(
        method=method, access_entity=entity, details=DagDetails(id=dag_id), user=user
    )


def require_change(user: Any, dag_id: str, entity: DagAccessEntity | None, doing: str, method: str = "PUT") -> None:
    """403 unless `user` may change what `doing` changes (see may_change)."""
    if not may_change(user, dag_id, entity, method):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{Reviewer.of(user).name} may not {doing} {dag_id}")


def create_app() -> FastAPI:
    app = FastAPI(title="Release console", description=__doc__, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request) -> Any:
        try:
            await get_user(request, None, None)
        except HTTPException:
            # Airflow may be served under a path (its api base_url): this page is at <that path>/releases/.
            base = request.url.path.rpartition(UI_URL_PREFIX)[0]
            return RedirectResponse(
                f"{base}/auth/login?next={base}{UI_URL_PREFIX}/", status_code=status.HTTP_303_SEE_OTHER
            )
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8"))

    @app.get("/api/pipelines")
    def pipelines(
        session: SessionDep, pipelines: Pipelines, runs: int = Query(1, ge=1, le=MAX_RUNS_PER_PIPELINE)
    ) -> dict[str, Any]:
        return {"pipelines": queries.overview(session, pipelines, per_pipeline=runs)}

    @app.get("/api/pipelines/{dag_id}/runs")
    def runs(
        dag_id: str,
        session: SessionDep,
        pipelines: Pipelines,
        offset: int = Query(0, ge=0),
        limit: int = Query(25, ge=1, le=MAX_PAGE),
        state: str | None = Query(None, pattern="^(queued|running|success|failed)$"),
        started_by: str | None = Query(None, pattern="^(webhook|event|schedule|manual|backfill|rollback)$"),
    ) -> dict[str, Any]:
        readable(dag_id, pipelines)
        return queries.history(session, dag_id, offset=offset, limit=limit, state=state, how=started_by)

    @app.get("/api/approvals")
    def approvals(user: GetUserDep, session: SessionDep, pipelines: Pipelines) -> dict[str, Any]:
        reviewer = Reviewer.of(user)
        waiting = queries.pending_approvals(session, pipelines)
        for approval in waiting:
            why_not = refusal(
                reviewer,
                task_id=approval["task_id"],
                approvers=approval["approvers"],
                authors=approval["authors"],
                allow_self_approval=approval["allow_self_approval"],
            )
            if why_not is None and not may_change(user, approval["pipeline"], DagAccessEntity.TASK_INSTANCE):
                why_not = f"{reviewer.name} may not change task instances of {approval['pipeline']}"
            approval["may_decide"], approval["refusal"] = why_not is None, why_not
        return {"user": reviewer.name, "approvals": waiting}

    @app.get("/api/pipelines/{dag_id}/transitions")
    def get_transitions(dag_id: str, session: SessionDep, pipelines: Pipelines) -> dict[str, Any]:
        return {"pipeline": dag_id, "transitions": queries.transitions(session, readable(dag_id, pipelines))}

    @app.put("/api/pipelines/{dag_id}/transitions/{stage}")
    def set_transition(
        dag_id: str, stage: str, change: TransitionChange, user: GetUserDep, session: SessionDep, pipelines: Pipelines
    ) -> dict[str, Any]:
        doors = {t["stage"]: t for t in queries.transitions(session, readable(dag_id, pipelines))}
        if stage not in doors:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"pipeline {dag_id!r} has no stage {stage!r} with a door; its stages with doors: "
                f"{', '.join(doors) or 'none (PARALLEL pipelines have no stage doors)'}",
            )
        require_change(user, dag_id, None, "edit pipeline")
        reason = (change.reason or "").strip()
        if not change.enabled and not reason:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "disabling a transition needs a reason")
        operations.set_transition(
            session, dag_id, stage, enabled=change.enabled, by=Reviewer.of(user).name, reason=reason
        )
        return {"pipeline": dag_id, "transitions": queries.transitions(session, dag_id)}

    @app.post("/api/pipelines/{dag_id}/runs/{run_id}/stages/{stage}/retry")
    def retry(
        dag_id: str,
        run_id: str,
        stage: str,
        body: RetryRequest,
        user: GetUserDep,
        session: SessionDep,
        pipelines: Pipelines,
    ) -> dict[str, Any]:
        readable(dag_id, pipelines)
        require_change(user, dag_id, DagAccessEntity.TASK_INSTANCE, "retry stages of")
        with refusals():
            cleared = operations.retry_stage(
                session, dag_id, run_id, stage, body.mode, Reviewer.of(user).name, (body.reason or "").strip()
            )
        return {"pipeline": dag_id, "run_id": run_id, "stage": stage, "mode": body.mode, "cleared": cleared}

    @app.post("/api/pipelines/{dag_id}/runs/{run_id}/stop")
    def stop(
        dag_id: str, run_id: str, body: StopRequest, user: GetUserDep, session: SessionDep, pipelines: Pipelines
    ) -> dict[str, Any]:
        readable(dag_id, pipelines)
        require_change(user, dag_id, DagAccessEntity.RUN, "stop runs of")
        how = operations.stop_and_wait if body.mode == "STOP_AND_WAIT" else operations.stop_run
        with refusals():
            stopped = how(session, dag_id, run_id, Reviewer.of(user), body.reason.strip())
        return {"pipeline": dag_id, "run_id": run_id, "mode": body.mode, "stopped": stopped}

    @app.post("/api/pipelines/{dag_id}/stages/{stage}/rollback")
    def rollback(
        dag_id: str, stage: str, body: RollbackRequest, user: GetUserDep, session: SessionDep, pipelines: Pipelines
    ) -> dict[str, Any]:
        readable(dag_id, pipelines)
        require_change(user, dag_id, DagAccessEntity.RUN, "roll back stages of", method="POST")
        with refusals():
            started = operations.rollback_stage(
                session, dag_id, stage, body.target_run_id, Reviewer.of(user), body.reason.strip()
            )
        return {"pipeline": dag_id, **started}

    @app.get("/api/metrics")
    def metrics(
        session: SessionDep, pipelines: Pipelines, days: int = Query(30, ge=1, le=max(METRIC_WINDOWS))
    ) -> dict[str, Any]:
        return queries.dora(session, pipelines, days=days, now=datetime.now(timezone.utc))

    return app
