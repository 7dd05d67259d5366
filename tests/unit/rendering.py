"""Rendering a compiled task's templates as a worker does, with the context of a real DAG run."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from airflow.sdk.api.datamodels._generated import DagRun, DagRunState, DagRunType, TIRunContext
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance, _serialize_rendered_fields


class RunTaskInstance(RuntimeTaskInstance):
    """The Task SDK's task instance; XComs of earlier actions come from `outputs` instead of the
    supervisor process (there is none in a unit test)."""

    outputs: dict[str, Any] = {}

    def xcom_pull(self, task_ids=None, **kwargs):  # noqa: ANN001 - Airflow's signature
        return self.outputs.get(task_ids)


def task_instance(dag, task_id: str, conf: dict | None = None, outputs: dict | None = None) -> RunTaskInstance:
    now = datetime.now(timezone.utc)
    run_id = "manual__2024-01-01T00:00:00+00:00"
    dag_run = DagRun(
        dag_id=dag.dag_id,
        run_id=run_id,
        logical_date=now,
        data_interval_start=now,
        data_interval_end=now,
        run_after=now,
        start_date=now,
        end_date=None,
        run_type=DagRunType.MANUAL,
        state=DagRunState.RUNNING,
        conf=conf or {},
        consumed_asset_events=[],
        partition_key=None,
    )
    task = dag.task_dict[task_id]
    return RunTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task_id,
        dag_id=dag.dag_id,
        run_id=run_id,
        try_number=1,
        map_index=-1,
        dag_version_id=uuid.uuid4(),
        start_date=now,
        task=task,
        max_tries=0,
        outputs=outputs or {},
        _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=0),
    )


def render(dag, task_id: str, conf: dict | None = None, outputs: dict | None = None):
    """The task with its template fields rendered (Airflow's own render_templates) and what Airflow
    stores as its Rendered Template view."""
    ti = task_instance(dag, task_id, conf, outputs)
    ti.render_templates(context=ti.get_template_context(), jinja_env=ti.task.dag.get_template_env())
    return ti.task, _serialize_rendered_fields(ti.task)
