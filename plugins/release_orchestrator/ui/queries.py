"""What the release console shows, read from Airflow's metadata DB (no second database).

Every function takes the DAG ids the signed-in user may read (the app asks the auth manager) and never
returns anything of another pipeline. A pipeline is a DAG tagged `release-pipeline` (the compiler's TAG);
a stage is the task group its actions' task ids start with; stages are ordered by their tasks' priority
weight (Airflow weighs a task by everything downstream of it, so earlier stages weigh more).
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow.models.dag import DagModel, DagTag
from airflow.models.dagrun import DagRun
from airflow.models.renderedtifields import RenderedTaskInstanceFields
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.orm import Session

from release_orchestrator import links as link_classes
from release_orchestrator.gate.policy import APPROVAL_OPERATORS, run_authors
from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY, WAIT_XCOM_KEY
from release_orchestrator.pipeline.action_types import ACTION_TYPES
from release_orchestrator.pipeline.compiler import TAG
from release_orchestrator.stages.entry import ENTER_TASK
from release_orchestrator.stages.rollback import ROLLBACK_RUN_PREFIX

RUNNING_STATES = frozenset({"running", "queued", "scheduled", "deferred", "up_for_retry", "up_for_reschedule"})
FAILED_STATES = frozenset({"failed", "upstream_failed"})
DONE_STATES = frozenset({"success", "skipped", "removed"})
# Operators whose failure is a failed change to production in the DORA sense (the Deploy category).
DEPLOY_OPERATORS = frozenset(
    t.operator.rpartition(":")[2] for t in ACTION_TYPES.values() if t.category == "Deploy" and t.operator
)
# Console links an action persisted (the provider's BaseAwsLink pattern): XCom key -> link class.
LINKS = {
    cls.key: cls()
    for cls in vars(link_classes).values()
    if isinstance(cls, type) and cls.__module__ == link_classes.__name__ and getattr(cls, "key", None)
}
REVISION_KEYS = (
    "provider",
    "repository",
    "branch",
    "commit_id",
    "commit_message",
    "author",
    "author_date",
    "commit_url",
)


def pipeline_ids(session: Session, readable: Iterable[str]) -> list[str]:
    """The pipelines among the DAGs the user may read, by name."""
    readable = set(readable)
    if not readable:
        return []
    query = (
        select(DagModel.dag_id)
        .join(DagTag, DagTag.dag_id == DagModel.dag_id)
        .where(DagTag.name == TAG, DagModel.is_stale.is_(False), DagModel.dag_id.in_(readable))
        .order_by(DagModel.dag_id)
    )
    return list(session.scalars(query))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 1) if start and end else None


def started_by(run: DagRun) -> str:
    """How a run started: webhook, event, schedule, manual, backfill or rollback (stages/rollback.py)."""
    if run.run_id.startswith("webhook__"):
        return "webhook"
    if run.run_id.startswith(ROLLBACK_RUN_PREFIX):
        return "rollback"
    if run.run_type == "asset_triggered":
        return "event"
    if run.run_type == "scheduled":
        return "schedule"
    if run.run_type == "backfill":
        return "backfill"
    return "manual"


def _source(conf: Any) -> dict[str, Any]:
    source = conf.get("source") if isinstance(conf, dict) else None
    return source if isinstance(source, dict) else {}


def revision(run: DagRun) -> dict[str, Any] | None:
    """The source revision the run releases, as its trigger gave it (conf["source"])."""
    source = _source(run.conf)
    return {key: source[key] for key in REVISION_KEYS if source.get(key) not in (None, "")} or None


def run_summary(run: DagRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": run.state,
        "started_by": started_by(run),
        "triggering_user": run.triggering_user_name,
        "run_after": _iso(run.run_after),
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
        "duration_seconds": _seconds(run.start_date, run.end_date),
        "revision": revision(run),
    }


def stage_state(states: list[str | None]) -> str:
    if any(s in FAILED_STATES for s in states):
        return "failed"
    if any(s in RUNNING_STATES for s in states):
        return "running"
    if states and all(s in DONE_STATES for s in states):
        return "succeeded" if any(s == "success" for s in states) else "skipped"
    if any(s in DONE_STATES for s in states):
        return "running"  # some actions done, the next run order not started yet
    return "not started"


def _links(xcoms: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for key, value in xcoms.items():
        link = LINKS.get(key)
        if link is not None and isinstance(value, dict):
            try:
                url = link.format_link(**value)
            except (TypeError, KeyError, ValueError):
                url = ""
            if url:
                out.append({"name": link.name, "url": url})
    return out


def _xcoms(session: Session, runs: list[DagRun], keys: Iterable[str]) -> dict[tuple[int, str], dict[str, Any]]:
    """(dag_run id, task id) -> {key: value} for the given keys."""
    if not runs:
        return {}
    rows = session.execute(
        select(XComModel.dag_run_id, XComModel.task_id, XComModel.key, XComModel.value).where(
            XComModel.dag_run_id.in_([run.id for run in runs]), XComModel.key.in_(list(keys))
        )
    )
    out: dict[tuple[int, str], dict[str, Any]] = defaultdict(dict)
    for run_id, task_id, key, value in rows:
        out[(run_id, task_id)][key] = XComModel.deserialize_value(_Value(value))
    return out


class _Value:
    """XComModel.deserialize_value reads `.value` of a row."""

    def __init__(self, value: Any):
        self.value = value


def stages_of(session: Session, runs: list[DagRun]) -> dict[int, list[dict[str, Any]]]:
    """dag_run id -> its stages in order, each with its actions (state, timing, links)."""
    if not runs:
        return {}
    by_key = {(run.dag_id, run.run_id): run for run in runs}
    tis = session.execute(
        select(
            TaskInstance.dag_id,
            TaskInstance.run_id,
            TaskInstance.task_id,
            TaskInstance.state,
            TaskInstance.start_date,
            TaskInstance.end_date,
            TaskInstance.operator,
            TaskInstance.priority_weight,
            TaskInstance.try_number,
        ).where(tuple_(TaskInstance.dag_id, TaskInstance.run_id).in_(list(by_key)), TaskInstance.map_index == -1)
    ).all()
    xcoms = _xcoms(session, runs, [*LINKS, DECISION_XCOM_KEY])
    grouped: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for ti in tis:
        run = by_key[(ti.dag_id, ti.run_id)]
        stage, _, action = ti.task_id.partition(".")
        grouped[run.id][stage].append(
            {
                "name": action or stage,
                "task_id": ti.task_id,
                "state": ti.state,
                "operator": ti.operator,
                "start_date": _iso(ti.start_date),
                "end_date": _iso(ti.end_date),
                "duration_seconds": _seconds(ti.start_date, ti.end_date),
                "try_number": ti.try_number,
                "links": _links(xcoms.get((run.id, ti.task_id), {})),
                "superseded_by": _superseded_by(xcoms.get((run.id, ti.task_id), {})),
                "_weight": ti.priority_weight or 0,
            }
        )
    out = {}
    for run_id, stages in grouped.items():
        ordered = sorted(stages.items(), key=lambda item: (-max(a["_weight"] for a in item[1]), item[0]))
        out[run_id] = []
        for name, actions in ordered:
            actions.sort(key=lambda a: (-a["_weight"], a["name"]))
            for action in actions:
                del action["_weight"]
            state = stage_state([a["state"] for a in actions])
            out[run_id].append({"name": name, "state": state, "waiting": door_wait(actions), "actions": actions})
    return out


def _superseded_by(xcoms: dict[str, Any]) -> str | None:
    """The newer run that superseded this run at an approval or a stage's door (their decision record)."""
    decision = xcoms.get(DECISION_XCOM_KEY)
    if isinstance(decision, dict) and decision.get("Outcome") == "Superseded":
        return str(decision.get("SupersededBy") or "") or None
    return None


# A stage's door (Enter) in these states: the run waits to enter the stage (operations.md).
DOOR_WAITS = {
    "scheduled": "waiting in line at the door",
    "queued": "at the door",
    "up_for_reschedule": "waiting in line at the door (an older run goes first)",
    "deferred": "waiting at the door for the stage to be free",
}


def door_wait(actions: list[dict[str, Any]]) -> str | None:
    """How the run waits at the stage's door, if it does (QUEUED and SUPERSEDED pipelines)."""
    enter = next((a for a in actions if a["name"] == ENTER_TASK), None)
    return DOOR_WAITS.get(enter["state"]) if enter else None


def latest_runs(session: Session, dag_ids: list[str], per_pipeline: int) -> dict[str, list[DagRun]]:
    """Each pipeline's newest runs (by run_after), newest first: one query for all pipelines."""
    if not dag_ids:
        return {}
    ranked = (
        select(
            DagRun.id,
            func.row_number()
            .over(partition_by=DagRun.dag_id, order_by=(DagRun.run_after.desc(), DagRun.id.desc()))
            .label("rank"),
        )
        .where(DagRun.dag_id.in_(dag_ids))
        .subquery()
    )
    runs = session.scalars(
        select(DagRun)
        .join(ranked, ranked.c.id == DagRun.id)
        .where(ranked.c.rank <= per_pipeline)
        .order_by(DagRun.dag_id, DagRun.run_after.desc(), DagRun.id.desc())
    ).all()
    out: dict[str, list[DagRun]] = {dag_id: [] for dag_id in dag_ids}
    for run in runs:
        out[run.dag_id].append(run)
    return out


def overview(session: Session, dag_ids: list[str], per_pipeline: int = 1) -> list[dict[str, Any]]:
    """Every pipeline with its latest runs, stage by stage."""
    runs = latest_runs(session, dag_ids, per_pipeline)
    stages = stages_of(session, [run for pipeline_runs in runs.values() for run in pipeline_runs])
    paused = dict(
        session.execute(select(DagModel.dag_id, DagModel.is_paused).where(DagModel.dag_id.in_(dag_ids))).all()
    )
    closed = disabled_transitions(session)
    return [
        {
            "pipeline": dag_id,
            "paused": bool(paused.get(dag_id)),
            "disabled_transitions": closed.get(dag_id, {}),
            "runs": [_with_stages(run, stages.get(run.id, [])) for run in runs[dag_id]],
        }
        for dag_id in dag_ids
    ]


def _with_stages(run: DagRun, stages: list[dict[str, Any]]) -> dict[str, Any]:
    superseded = [a["superseded_by"] for s in stages for a in s["actions"] if a["superseded_by"]]
    return {**run_summary(run), "superseded_by": superseded[0] if superseded else None, "stages": stages}


def disabled_transitions(session: Session) -> dict[str, dict[str, dict[str, Any]]]:
    """dag_id -> stage -> who disabled the transition into it, when and why: one query for every pipeline."""
    from airflow.models.variable import Variable

    from release_orchestrator.stages.transitions import VARIABLE_PREFIX, parse

    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for variable in session.scalars(select(Variable).where(Variable.key.startswith(VARIABLE_PREFIX))):
        dag_id, _, stage = variable.key.removeprefix(VARIABLE_PREFIX).rpartition(".")
        record = parse(variable.val)  # .val decrypts
        if dag_id and record is not None:
            out[dag_id][stage] = record
    return out


def history(
    session: Session,
    dag_id: str,
    *,
    offset: int = 0,
    limit: int = 25,
    state: str | None = None,
    how: str | None = None,
) -> dict[str, Any]:
    """One pipeline's runs, newest first, a page at a time; `state` and `how` (started_by) filter them."""
    conditions = [DagRun.dag_id == dag_id]
    if state:
        conditions.append(DagRun.state == state)
    prefixes = {"webhook": "webhook__", "rollback": ROLLBACK_RUN_PREFIX}
    if how in prefixes:
        conditions.append(DagRun.run_id.startswith(prefixes[how]))
    elif how:
        run_type = {"event": "asset_triggered", "schedule": "scheduled", "backfill": "backfill"}.get(how, "manual")
        conditions.append(DagRun.run_type == run_type)
        if how == "manual":
            conditions += [~DagRun.run_id.startswith(prefix) for prefix in prefixes.values()]
    total = session.scalar(select(func.count()).select_from(DagRun).where(*conditions)) or 0
    runs = session.scalars(
        select(DagRun)
        .where(*conditions)
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return {
        "pipeline": dag_id,
        "total": total,
        "offset": offset,
        "limit": limit,
        "runs": [run_summary(r) for r in runs],
    }


def pending_approvals(session: Session, dag_ids: list[str]) -> list[dict[str, Any]]:
    """Approval actions waiting for a decision, oldest first, with what the reviewer needs to decide."""
    if not dag_ids:
        return []
    rendered = RenderedTaskInstanceFields
    rows = session.execute(
        select(TaskInstance, DagRun, rendered.rendered_fields)
        .join(DagRun, and_(DagRun.dag_id == TaskInstance.dag_id, DagRun.run_id == TaskInstance.run_id))
        .outerjoin(
            rendered,
            and_(
                rendered.dag_id == TaskInstance.dag_id,
                rendered.run_id == TaskInstance.run_id,
                rendered.task_id == TaskInstance.task_id,
                rendered.map_index == TaskInstance.map_index,
            ),
        )
        .where(
            TaskInstance.dag_id.in_(dag_ids),
            TaskInstance.operator.in_(APPROVAL_OPERATORS),
            TaskInstance.state == "deferred",
        )
        .order_by(TaskInstance.start_date)
    ).all()
    runs = [run for _, run, _ in rows]
    waits = _xcoms(session, runs, [WAIT_XCOM_KEY, "return_value"])
    out = []
    for ti, run, fields in rows:
        wait = waits.get((run.id, ti.task_id), {}).get(WAIT_XCOM_KEY) or {}
        outputs = {
            task_id: values["return_value"]
            for (run_id, task_id), values in waits.items()
            if run_id == run.id and isinstance(values.get("return_value"), dict)
        }
        out.append(
            {
                "pipeline": run.dag_id,
                "run": run_summary(run),
                "task_id": ti.task_id,
                "mode": wait.get("mode", "form" if ti.operator == "FormApprovalOperator" else "mark"),
                "waiting_since": _iso(ti.start_date),
                "expires": wait.get("expires"),
                "approvers": wait.get("approvers") or [],
                "allow_self_approval": bool(wait.get("allow_self_approval")),
                "authors": run_authors(run.triggering_user_name, run.conf),
                "custom_data": (fields or {}).get("custom_data"),
                "external_entity_link": (fields or {}).get("external_entity_link"),
                "outputs": outputs,  # what the earlier actions of the run reported: the build, the tests
                "last_release": last_release(session, run),
            }
        )
    return out


def last_release(session: Session, run: DagRun) -> dict[str, Any] | None:
    """The pipeline's latest successful run before `run`: what this one changes from."""
    previous = session.scalars(
        select(DagRun)
        .where(DagRun.dag_id == run.dag_id, DagRun.state == "success", DagRun.run_after < run.run_after)
        .order_by(DagRun.run_after.desc())
        .limit(1)
    ).first()
    return run_summary(previous) if previous else None


# --- DORA metrics ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A finished run, as DORA's keys count it."""

    pipeline: str
    succeeded: bool
    ended: datetime
    committed: datetime | None = None  # the released commit's time (conf["source"]["author_date"])
    deploy_failed: bool = False  # failed in a Deploy action: a change that failed in production


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _median_hours(values: list[float]) -> float | None:
    return round(statistics.median(values) / 3600, 2) if values else None


def dora_keys(runs: list[Finished], days: int, since: datetime) -> dict[str, Any]:
    """DORA's four keys over `runs` (all ended in the window of `days` from `since`), defined in docs/ui.md.

    - deployment frequency: successful runs (each one released to production) per day;
    - lead time for changes: median of commit time -> successful run's end;
    - change failure rate: runs failed in a Deploy action / (successful runs + those);
    - time to restore service: median of such a failure's end -> the same pipeline's next successful end.
    """
    deployments = [r for r in runs if r.succeeded]
    failures = [r for r in runs if r.deploy_failed and not r.succeeded]
    lead = [(r.ended - r.committed).total_seconds() for r in deployments if r.committed]
    ends: dict[str, list[datetime]] = defaultdict(list)  # each pipeline's successful ends, in order
    for r in sorted(deployments, key=lambda r: r.ended):
        ends[r.pipeline].append(r.ended)
    restore = []
    for failure in failures:
        later = ends[failure.pipeline]
        if (i := bisect.bisect_right(later, failure.ended)) < len(later):
            restore.append((later[i] - failure.ended).total_seconds())
    attempts = len(deployments) + len(failures)
    daily: dict[str, int] = defaultdict(int)
    for r in deployments:
        daily[r.ended.date().isoformat()] += 1
    day_names = [(since + timedelta(days=i + 1)).date().isoformat() for i in range(days)]
    return {
        "deployments": len(deployments),
        "deployment_frequency_per_day": round(len(deployments) / days, 3),
        "lead_time_hours_median": _median_hours(lead),
        "change_failure_rate": round(len(failures) / attempts, 3) if attempts else None,
        "time_to_restore_hours_median": _median_hours(restore),
        "failed_deployments": len(failures),
        "deployments_per_day": [{"day": day, "count": daily.get(day, 0)} for day in day_names],
    }


def dora(session: Session, dag_ids: list[str], *, days: int, now: datetime) -> dict[str, Any]:
    """DORA's four keys per pipeline and over all of them, for the `days` before `now`."""
    since = now - timedelta(days=days)
    failed_in_a_deploy = (
        select(TaskInstance.run_id)
        .where(
            TaskInstance.dag_id == DagRun.dag_id,
            TaskInstance.run_id == DagRun.run_id,
            TaskInstance.operator.in_(DEPLOY_OPERATORS),
            TaskInstance.state == "failed",
        )
        .exists()
    )
    rows = session.execute(
        select(
            DagRun.dag_id,
            DagRun.state,
            DagRun.end_date,
            # Only the commit time of the conf, read by the database, not every run's whole conf.
            DagRun.conf["source"]["author_date"].as_string().label("committed"),
            and_(DagRun.state == "failed", failed_in_a_deploy).label("deploy_failed"),
        )
        .where(DagRun.dag_id.in_(dag_ids), DagRun.end_date > since, DagRun.end_date <= now)
        .where(DagRun.state.in_(("success", "failed")))
    ).all()
    runs = [
        Finished(
            pipeline=row.dag_id,
            succeeded=row.state == "success",
            ended=row.end_date,
            committed=_parse_time(row.committed),
            deploy_failed=bool(row.deploy_failed),
        )
        for row in rows
    ]
    per_pipeline: dict[str, list[Finished]] = defaultdict(list)
    for run in runs:
        per_pipeline[run.pipeline].append(run)
    return {
        "days": days,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "overall": dora_keys(runs, days, since),
        "pipelines": {dag_id: dora_keys(per_pipeline[dag_id], days, since) for dag_id in dag_ids},
    }


# ---- transitions (stages/transitions.py) --------------------------------------------------------
def stages_in_order(dag: Any) -> list[tuple[str, list[str]]]:
    """A compiled pipeline's stages (its task groups but Preflight) in order, each with its task ids."""
    from release_orchestrator.pipeline.model import PREFLIGHT_GROUP

    groups: dict[str, list[str]] = {}
    for task in dag.tasks:
        groups.setdefault(task.task_id.partition(".")[0], []).append(task.task_id)
    before: dict[str, set[str]] = {group: set() for group in groups}  # group -> the groups it waits for
    for task in dag.tasks:
        group = task.task_id.partition(".")[0]
        before[group] |= {up.partition(".")[0] for up in task.upstream_task_ids} - {group}
    depth: dict[str, int] = {}

    def place(group: str) -> int:
        if group not in depth:
            depth[group] = 1 + max((place(up) for up in before[group]), default=-1)
        return depth[group]

    ordered = sorted(groups, key=lambda group: (place(group), group))
    return [(group, sorted(groups[group])) for group in ordered if group != PREFLIGHT_GROUP]


def transitions(session: Session, dag_id: str) -> list[dict[str, Any]]:
    """Each stage with a door (its `<Stage>.Enter` task in the pipeline's latest DAG), in order, with its
    transition: enabled, or who disabled it, when and why."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.variable import Variable

    from release_orchestrator.stages.transitions import parse, variable_key

    dag = SerializedDagModel.get_dag(dag_id, session=session)
    if dag is None:
        return []
    stages = [stage for stage, tasks in stages_in_order(dag) if f"{stage}.{ENTER_TASK}" in tasks]
    keys = {variable_key(dag_id, stage): stage for stage in stages}
    stored = {v.key: v.val for v in session.scalars(select(Variable).where(Variable.key.in_(keys)))}  # .val decrypts
    out = []
    for key, stage in keys.items():
        record = parse(stored.get(key))
        out.append({"stage": stage, "enabled": record is None, **(record or {})})
    return out
