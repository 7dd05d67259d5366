"""Accepted deliveries: recorded before the answer, turned into DAG runs right after it.

Creating a DAG run costs milliseconds of CPU and a dozen database round trips (the run, its task instances,
checks); a push that matches several pipelines multiplies that. So the receiver answers once the delivery is
*recorded* - one row in `release_orchestrator_webhook_delivery`, in the Airflow metadata DB - and a starter
thread in the same api-server process creates the runs a moment later. Nothing is lost in between: a row
stays pending until every run it names exists, and a starter in any api-server process (after a restart, the
next one) picks up what another left.

The table is also the replay guard: every signed push or pull request delivery is recorded, whether it starts
runs or nothing (a paused pipeline, no filter matching, a fork's pull request refused): a delivery id, or a body
digest, seen before starts nothing again, even if a pipeline would start now. Run ids
stay deterministic (webhook__<delivery>__<digest>), so even two starters racing on one row create each run once.
Rows are kept WEBHOOK_RETENTION_DAYS days (a setting, 30 by default), which is how long a replay is recognised by the table; the
runs' own unique ids still stop a replayed delivery from starting a run that exists.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from release_orchestrator import settings
from release_orchestrator.webhooks.logtext import logtext

log = logging.getLogger(__name__)

PENDING, STARTING, DONE, FAILED = "pending", "starting", "done", "failed"
MAX_ATTEMPTS = 3
RETRY_SECONDS = 5.0  # times the attempt number
LEASE_SECONDS = 300.0  # a claimed row whose starter died is taken up again after this

metadata = MetaData()
deliveries = Table(
    "release_orchestrator_webhook_delivery",
    metadata,
    Column("delivery_id", String(100), primary_key=True),
    Column("body_digest", String(16), nullable=False),
    Column("provider", String(20), nullable=False),
    Column("received_at", Float, nullable=False),  # epoch seconds: the same on every database
    Column("starts", Text, nullable=False),  # JSON: [{dag_id, run_id, conf, note, user}]
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("error", Text),
    Index("release_orchestrator_webhook_delivery_digest", "body_digest"),
    Index("release_orchestrator_webhook_delivery_due", "state", "next_attempt_at"),
)

SessionScope = Callable[[], AbstractContextManager]


def airflow_session() -> AbstractContextManager:
    from airflow.utils.session import create_session

    return create_session()


@dataclass
class Recorded:
    """What record() did: `new` (runs will be created), `requeued` (a failed delivery sent again), `duplicate`."""

    outcome: str
    runs: list[dict[str, str]] = field(default_factory=list)  # for a duplicate: the runs the first one started


@dataclass
class Claimed:
    delivery_id: str
    starts: list[dict[str, Any]]
    attempts: int


class DeliveryStore:
    def __init__(self, session_scope: SessionScope = airflow_session):
        self.session_scope = session_scope
        self._table_ready = False
        self._lock = threading.Lock()

    def ensure_table(self, session) -> None:
        """Create the table on first use (it is the plugin's own; Airflow's migrations do not know it)."""
        if not self._table_ready:
            with self._lock:
                if not self._table_ready:
                    bind = session.get_bind()
                    try:
                        metadata.create_all(bind, checkfirst=True)
                    except SQLAlchemyError:  # another api-server process created it at the same moment
                        if not inspect(bind).has_table(deliveries.name):
                            raise
                    self._table_ready = True

    def record(self, delivery_id: str, digest: str, provider: str, starts: list[dict[str, Any]]) -> Recorded:
        """Record a delivery and the runs it starts, unless this delivery (or its body) was recorded before."""
        return self.record_many([(delivery_id, digest, provider, starts)])[0]

    def record_many(self, items: list[tuple[str, str, str, list[dict[str, Any]]]], attempt: int = 1) -> list[Recorded]:
        """record() for several deliveries (delivery id, body digest, provider, starts) in one transaction, each
        judged as if recorded one after the other in this order (the second of two equal ones is a duplicate)."""
        try:
            with self.session_scope() as session:
                self.ensure_table(session)
                ids, digests = {item[0] for item in items}, {item[1] for item in items}
                known = [
                    dict(row._mapping)
                    for row in session.execute(
                        select(
                            deliveries.c.delivery_id, deliveries.c.body_digest, deliveries.c.starts, deliveries.c.state
                        )
                        .where(or_(deliveries.c.delivery_id.in_(ids), deliveries.c.body_digest.in_(digests)))
                        .order_by(deliveries.c.received_at)
                    )
                ]
                recorded, new_rows = [], []
                for delivery_id, digest, provider, starts in items:
                    rows = [row for row in known if row["delivery_id"] == delivery_id or row["body_digest"] == digest]
                    mine = [row for row in rows if row["delivery_id"] == delivery_id]
                    if mine and mine[0]["state"] == FAILED and len(rows) == 1:
                        # Sent again after its runs could not be created: try again from the start.
                        session.execute(
                            update(deliveries)
                            .where(deliveries.c.delivery_id == delivery_id)
                            .values(state=PENDING, attempts=0, next_attempt_at=time.time(), error=None)
                        )
                        mine[0]["state"] = PENDING
                        recorded.append(Recorded("requeued"))
                    elif rows:  # the same delivery again, or its body under another delivery id: a replay
                        recorded.append(Recorded("duplicate", [run for row in rows for run in _runs(row["starts"])]))
                    else:
                        # Recorded even when it starts nothing: replayed after the pipeline is unpaused or its
                        # filter changed, it must not start what it did not start when it came.
                        now = time.time()
                        row = {
                            "delivery_id": delivery_id,
                            "body_digest": digest,
                            "provider": provider,
                            "received_at": now,
                            "starts": json.dumps(starts),
                            "state": PENDING if starts else DONE,
                            "attempts": 0,
                            "next_attempt_at": now,
                        }
                        new_rows.append(row)
                        known.append(row)
                        recorded.append(Recorded("new"))
                if new_rows:
                    session.execute(deliveries.insert(), new_rows)
                return recorded
        except IntegrityError:  # a delivery arrived twice at once and another process got there first
            if attempt >= MAX_ATTEMPTS:
                raise
            return self.record_many(items, attempt + 1)

    def claim(self, limit: int = 20) -> list[Claimed]:
        """Take up to `limit` due deliveries for this starter (leased, so a dead starter's rows come back)."""
        now = time.time()
        with self.session_scope() as session:
            self.ensure_table(session)
            rows = session.execute(
                select(deliveries.c.delivery_id, deliveries.c.starts, deliveries.c.attempts)
                .where(deliveries.c.state.in_((PENDING, STARTING)), deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)  # PostgreSQL/MySQL; SQLite has one writer anyway
            ).all()
            if rows:
                session.execute(
                    update(deliveries)
                    .where(deliveries.c.delivery_id.in_([r.delivery_id for r in rows]))
                    .values(state=STARTING, next_attempt_at=now + LEASE_SECONDS)
                )
        return [Claimed(r.delivery_id, json.loads(r.starts), r.attempts) for r in rows]

    def finish(self, claimed: Claimed, errors: list[str]) -> str:
        """Mark a claimed delivery done, due again (after a pause), or failed for good. Returns the new state."""
        attempts = claimed.attempts + 1
        if not errors:
            state, values = DONE, {"error": None}
        elif attempts < MAX_ATTEMPTS:
            state, values = (
                PENDING,
                {"error": "; ".join(errors), "next_attempt_at": time.time() + RETRY_SECONDS * attempts},
            )
        else:
            state, values = FAILED, {"error": "; ".join(errors)}
        with self.session_scope() as session:
            session.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id == claimed.delivery_id)
                .values(state=state, attempts=attempts, **values)
            )
        return state

    def forget_older_than(self, days: float | None = None) -> int:
        """Forget finished deliveries older than ``days`` (default: the WEBHOOK_RETENTION_DAYS setting)."""
        days = settings.WEBHOOK_RETENTION_DAYS.get() if days is None else days
        with self.session_scope() as session:
            self.ensure_table(session)
            result = session.execute(
                deliveries.delete().where(
                    deliveries.c.received_at < time.time() - days * 86400, deliveries.c.state.in_((DONE, FAILED))
                )
            )
            return result.rowcount or 0

    def backlog(self) -> dict[str, int]:
        """How many deliveries still wait for their runs (`waiting`: due, being started or retried) and how many
        gave up (`failed`, kept until the retention ends or the delivery is sent again)."""
        with self.session_scope() as session:
            self.ensure_table(session)
            counts = dict(
                session.execute(
                    select(deliveries.c.state, func.count())
                    .where(deliveries.c.state.in_((PENDING, STARTING, FAILED)))
                    .group_by(deliveries.c.state)
                ).all()
            )
        return {"waiting": counts.get(PENDING, 0) + counts.get(STARTING, 0), "failed": counts.get(FAILED, 0)}

    def get(self, delivery_id: str) -> dict | None:
        with self.session_scope() as session:
            self.ensure_table(session)
            row = session.execute(select(deliveries).where(deliveries.c.delivery_id == delivery_id)).mappings().first()
            return dict(row) if row else None


class GroupCommit:
    """Callers hand in one item each and wait for its result; a caller that finds no batch running takes
    everything queued (up to `max_batch`) and runs it as one batch for all of them.

    So while one batch is in the database, the deliveries arriving meanwhile queue up and go in together: at
    hundreds of deliveries a second the metadata DB sees a few transactions instead of hundreds, and one thread
    at a time does the database work instead of dozens contending for the interpreter. A lone delivery is a
    batch of one, handled at once. `run_batch` returns one result per item; an exception among them is raised
    to that item's caller, and one raised by `run_batch` to every caller of the batch.
    """

    def __init__(self, run_batch: Callable[[list], list], max_batch: int = 100):
        self.run_batch, self.max_batch = run_batch, max_batch
        self._changed = threading.Condition()
        self._queue: list[list] = []  # [item, result, done]
        self._running = False

    def submit(self, item: Any) -> Any:
        entry = [item, None, False]
        with self._changed:
            self._queue.append(entry)
            while not entry[2]:
                if self._running:
                    self._changed.wait()
                    continue
                self._running = True
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                self._changed.release()
                results = None
                try:
                    results = self._run([queued[0] for queued in batch])
                finally:  # even when interrupted, no caller of the batch is left waiting
                    self._changed.acquire()
                    self._running = False
                    for queued, result in zip(batch, results or [RuntimeError("batch interrupted")] * len(batch)):
                        queued[1], queued[2] = result, True
                    self._changed.notify_all()
        if isinstance(entry[1], BaseException):
            raise entry[1]
        return entry[1]

    def _run(self, items: list) -> list:
        try:
            results = self.run_batch(items)
        except Exception as err:  # noqa: BLE001 - each caller gets it
            return [err] * len(items)
        if len(results) != len(items):
            return [RuntimeError(f"a batch of {len(items)} gave {len(results)} results")] * len(items)
        return results


def _runs(starts_json: str) -> list[dict[str, str]]:
    return [{"dag_id": s["dag_id"], "run_id": s["run_id"]} for s in json.loads(starts_json)]


class Starter:
    """Creates the runs of recorded deliveries: woken by each new delivery, and every `poll_seconds` anyway."""

    def __init__(
        self, store: DeliveryStore, airflow: Any, poll_seconds: float = 5.0, batch: int = 20, autostart: bool = True
    ):
        self.store, self.airflow = store, airflow
        self.poll_seconds, self.batch = poll_seconds, batch
        self.autostart = autostart  # start the thread on the first wake() if the app's lifespan did not
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cleanup = 0.0
        self.heartbeat: Callable[[], None] = lambda: None  # called every round and batch (a liveness check's)

    def wake(self) -> None:
        if self.autostart and (self._thread is None or not self._thread.is_alive()) and not self._stop.is_set():
            self.start()
        self._wake.set()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="release-webhook-starter", daemon=True)
            self._thread.start()
            log.info("webhook starter running in process %d: creates the runs of recorded deliveries", os.getpid())

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """The starter's loop in the calling thread, until stop() (webhooks/starter.py runs it so)."""
        self._stop.clear()
        self._loop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.heartbeat()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            try:
                self.drain()
                if time.monotonic() - self._last_cleanup > 3600:
                    self._last_cleanup = time.monotonic()
                    if removed := self.store.forget_older_than():
                        log.info("forgot %d finished webhook deliveries past their retention", removed)
            except Exception:  # noqa: BLE001 - the database may be away for a while; the rows wait for it
                log.exception("webhook starter: could not create the runs of recorded deliveries; trying again")
                self._stop.wait(self.poll_seconds)

    def drain(self) -> int:
        """Create the runs of every due delivery; returns how many deliveries were handled."""
        handled = 0
        while not self._stop.is_set():
            self.heartbeat()
            claimed = self.store.claim(self.batch)
            if not claimed:
                return handled
            for delivery in claimed:
                self.start_runs(delivery)
            handled += len(claimed)
        return handled

    def start_runs(self, delivery: Claimed) -> str:
        from release_orchestrator.webhooks.runs import AlreadyStarted

        errors = []
        for start in delivery.starts:
            try:
                self.airflow.start(
                    start["dag_id"], start["run_id"], start["conf"], note=start["note"], user=start["user"]
                )
            except AlreadyStarted:
                pass  # a redelivery, or another starter was quicker: the run exists, which is the point
            except Exception as err:  # noqa: BLE001 - recorded per delivery, retried, then left as failed
                errors.append(f"{start['dag_id']}: {err}")
        state = self.store.finish(delivery, errors)
        if state == FAILED:
            log.error(
                "webhook delivery %s: runs not created after %d attempts: %s (send the delivery again to retry)",
                logtext(delivery.delivery_id),
                MAX_ATTEMPTS,
                logtext("; ".join(errors), 2000),
            )
        elif errors:
            log.warning(
                "webhook delivery %s: %s; trying again", logtext(delivery.delivery_id), logtext("; ".join(errors), 2000)
            )
        return state
