"""Events of what people do to a run through the release console's API (ui/operations.py): a run stopped
(`pipeline-stopping` and `stage-stopping` for the stages with actions at work, for stop and wait;
`pipeline-stopped` and `stage-stopped` for stop) and a failed stage retried (`pipeline-resumed`,
`stage-resumed`).

They are published from the api-server, once the change is committed, one per request. Airflow keeps no
callbacks in the serialized DAG, so the pipeline's notification settings are read from its spec (the spec
directories the webhook receiver reads, re-read only when a file changes); a pipeline whose spec the
api-server cannot read publishes nothing, which is logged. A run stopped and waiting ends with
`pipeline-stopped`, published by its DAG failure callback (notifier.py, `stopped_and_waited`).
"""

from __future__ import annotations

import logging
from typing import Any

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.publishing import airflow_base_url, publish

log = logging.getLogger(__name__)

OPERATION_EVENTS = (
    "pipeline-stopping",
    "pipeline-stopped",
    "pipeline-resumed",
    "stage-stopping",
    "stage-stopped",
    "stage-resumed",
)


def announce(dag_id: str, run_id: str, events: list[str], detail: dict[str, Any], stages: list[str] = ()) -> None:
    """Publish those of `events` the pipeline asks for (each `level-state`; a stage event once for each of
    `stages`, their group ids), with `detail` (who and why) in each; never raises."""
    try:
        pipeline = _pipeline(dag_id)
        wanted = [
            event for event in events if pipeline and pipeline.notifications and event in pipeline.notifications.events
        ]
        if not wanted:
            return
        from airflow.providers.amazon.aws.hooks.sns import SnsHook

        from release_orchestrator.notifications.notifier import execution_type

        n = pipeline.notifications
        hook = SnsHook(aws_conn_id=n.aws_conn_id or pipeline.aws_conn_id, region_name=pipeline.region)
        region = pipeline.region or hook.conn_region_name or ""
        links = messages.airflow_links(airflow_base_url(), dag_id, run_id)
        occasions = [(event, stage) for event in wanted for stage in (stages if event.startswith("stage-") else [None])]
        for event, stage in occasions:
            level, _, state = event.partition("-")
            extra = {"airflow-run-link": links["run"], **detail}
            if level == "pipeline":
                extra.update(execution_type(_conf(dag_id, run_id)))
            message = messages.state_change_event(
                level=level,
                pipeline=pipeline.name,
                execution_id=run_id,
                state=state.upper(),
                region=region,
                stage=stage,
                extra=extra,
            )
            what = f"stage {stage} of pipeline {pipeline.name}" if level == "stage" else f"pipeline {pipeline.name}"
            subject = f"{state.upper()}: {what} (run {run_id})"
            publish(hook, n.topic_arn, subject, message, {"event": event, "pipeline": pipeline.name})
    except Exception:  # noqa: BLE001 - the operation is done; a notification never undoes or fails it
        log.exception("Could not publish %s for run %s of %s", ", ".join(events), run_id, dag_id)


def _pipeline(dag_id: str) -> Any:
    from release_orchestrator.webhooks.runs import dag_id_of, load_pipelines

    found = next((p for p in load_pipelines() if dag_id_of(p) == dag_id), None)
    if found is None:
        log.warning(
            "No readable spec of pipeline %s in the api-server: stop and retry events are not published", dag_id
        )
    return found


def _conf(dag_id: str, run_id: str) -> dict[str, Any] | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(DagRun.conf).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
