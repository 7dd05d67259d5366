"""The Airflow side of a delivery: which pipelines exist, whether they can start, and starting their runs.

A run started by a webhook has a deterministic run_id,

    webhook__<delivery id>__<first 16 hex digits of the SHA-256 of the body>[__<n>]

(`__<n>` for the n-th further branch or tag of a Bitbucket push that updated several). The metadata DB keeps
run ids unique per DAG, so however often a delivery is handled, each of its runs is created once. The record of
deliveries (deliveries.py) also catches a captured body resent under a new delivery id: the signature covers
the body only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from release_orchestrator import settings
from release_orchestrator.pipeline.model import Pipeline

log = logging.getLogger(__name__)

RUN_ID_PREFIX = "webhook__"
# Delivery ids become part of run ids: Airflow allows [A-Za-z0-9_.~:+-]; "__" separates the parts.
DELIVERY_ID_RE = re.compile(r"[A-Za-z0-9_.~:+-]{1,100}")


def valid_delivery_id(delivery_id: str) -> bool:
    return bool(DELIVERY_ID_RE.fullmatch(delivery_id)) and "__" not in delivery_id and ".." not in delivery_id


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def run_id_for(delivery_id: str, digest: str, index: int = 0) -> str:
    return f"{RUN_ID_PREFIX}{delivery_id}__{digest}" + (f"__{index}" if index else "")


class SpecCache:
    """The valid pipelines of the spec directories, re-read only when a spec file changes.

    Every delivery lists the directories and stats the files (microseconds); the specs are parsed and
    validated again (milliseconds each) only when a file was added, removed or rewritten, so a change to a
    spec applies to the very next delivery without every delivery paying for the parse.
    """

    def __init__(self, dirs=settings.pipelines_dirs):
        self._dirs = dirs
        self._lock = threading.Lock()
        self._fingerprint: tuple | None = None
        self._pipelines: list[Pipeline] = []

    def fingerprint(self, dirs: list[str]) -> tuple:
        from release_orchestrator.pipeline.loader import spec_files

        files = []
        for directory in dirs:
            for file in spec_files(directory):
                try:
                    stat = file.stat()
                except OSError:  # removed while listing: the next delivery sees the directory as it is then
                    continue
                files.append((str(file), stat.st_mtime_ns, stat.st_size, stat.st_ino))
        return tuple(files)

    def pipelines(self) -> list[Pipeline]:
        from release_orchestrator.pipeline.loader import load_specs

        dirs = [d for d in self._dirs() if Path(d).is_dir()]
        fingerprint = self.fingerprint(dirs)
        with self._lock:
            if fingerprint != self._fingerprint:
                pipelines, errors = load_specs(dirs)
                if errors:
                    log.info("webhooks ignore %d invalid spec file(s): %s", len(errors), ", ".join(sorted(errors)))
                self._fingerprint, self._pipelines = fingerprint, pipelines
            return self._pipelines


load_pipelines = SpecCache().pipelines


def dag_id_of(pipeline: Pipeline) -> str:
    from release_orchestrator.pipeline.compiler import airflow_key

    return airflow_key(pipeline.name)


class AlreadyStarted(Exception):
    """A run with this run_id exists (a concurrent delivery of the same change got there first)."""


class AirflowRuns:
    """Reads and starts DAG runs in the metadata DB, as the api-server's own routes do."""

    def __init__(self) -> None:
        self._dag_bag = None

    def blockers(self, dag_ids: list[str]) -> dict[str, str]:
        """Why each of these pipelines' DAGs cannot start now (absent when it can), in one query."""
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        reasons = {}
        with create_session() as session:
            dags = {dag.dag_id: dag for dag in session.scalars(select(DagModel).where(DagModel.dag_id.in_(dag_ids)))}
            for dag_id in dag_ids:
                dag = dags.get(dag_id)
                if dag is None or dag.is_stale:
                    reasons[dag_id] = "the pipeline's DAG is not loaded in Airflow (is its spec valid and parsed yet?)"
                elif dag.has_import_errors:
                    reasons[dag_id] = "the pipeline's DAG has import errors"
                elif dag.is_paused:
                    reasons[dag_id] = "the pipeline is paused"
        return reasons

    def _dags(self):
        """One DBDagBag for the receiver's life: it keeps each deserialized DAG version, so a delivery reads
        only the id of the latest version, not the whole serialized DAG (trigger_dag reads and deserializes
        it on every call, which cost more than everything else a delivery does)."""
        if self._dag_bag is None:
            from airflow.models.dagbag import DBDagBag

            self._dag_bag = DBDagBag(load_op_links=False)
        return self._dag_bag

    def start(self, dag_id: str, run_id: str, conf: dict[str, Any], note: str, user: str) -> str:
        """Create a queued run, validating conf against the DAG's params, as POST /dagRuns does."""
        from airflow.exceptions import DagNotFound
        from airflow.models.dag_version import DagVersion
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState
        from airflow.utils.types import DagRunTriggeredByType, DagRunType
        from sqlalchemy.exc import IntegrityError

        try:
            with create_session() as session:
                version = DagVersion.get_latest_version(dag_id, session=session)
                dag = self._dags().get_dag(version.id, session=session) if version else None
                if dag is None:
                    raise DagNotFound(f"no serialized version of DAG {dag_id} in the metadata DB")
                run = dag.create_dagrun(
                    run_id=run_id,
                    logical_date=None,
                    data_interval=None,
                    run_after=datetime.now(timezone.utc),
                    conf=conf,
                    run_type=DagRunType.MANUAL,
                    triggered_by=DagRunTriggeredByType.REST_API,
                    triggering_user_name=user,
                    note=note,
                    state=DagRunState.QUEUED,
                    session=session,
                )
                run_id = run.run_id
        except IntegrityError as err:  # the unique (dag_id, run_id): this delivery's run exists
            raise AlreadyStarted(run_id) from err
        return run_id
