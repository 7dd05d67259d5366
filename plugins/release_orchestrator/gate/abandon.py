"""Stopping the AWS work of a waiting action that a user abandons, from the api-server.

A deferred action stops its build, deployment, stack update... in its trigger's ``on_kill``
(triggers/base.py), which the triggerer calls when it cancels the trigger. But a trigger the triggerer
has not picked up yet (it loads new triggers every few seconds) is never started, so never cancelled:
marking the task, or its run, failed in the first seconds of the wait left the work running.

So the api-server stops it too: when a user's request (the UI, the REST API, the console's stop, all
seen by the gate's database hook, gate/enforcement.py) moves a deferred task instance to failed,
skipped or upstream failed, its trigger's record (class and arguments) is noted, and once the
transaction has committed the trigger is rebuilt here and its ``stop()`` called, in a thread. A
trigger the triggerer did start is stopped by both; each stop is safe to repeat (a build already
stopped, a deployment already ended is logged and left).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_PENDING = "release_orchestrator_abandoned_waits"  # key in session.info: trigger id -> (classpath, kwargs, what)


def note_if_abandoned(session: Any, ti: Any, before: str | None, after: str | None) -> None:
    """In a flush: remember the trigger of a deferred task instance the request abandons."""
    if before != "deferred" or ti.trigger_id is None:
        return
    from airflow.models.trigger import Trigger

    from release_orchestrator.triggers.base import ABANDONED_STATES  # what the trigger's on_kill stops for

    if after not in ABANDONED_STATES:
        return

    trigger = session.get(Trigger, ti.trigger_id)
    if trigger is None:
        return
    what = f"{ti.dag_id} {ti.run_id} {ti.task_id}"
    pending = session.info.setdefault(_PENDING, {})
    pending.setdefault(ti.trigger_id, (trigger.classpath, dict(trigger.kwargs), what))  # once per trigger


def install() -> None:
    """Hook the commit and rollback of every session in this process (idempotent)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


def _after_rollback(session: Any) -> None:
    session.info.pop(_PENDING, None)  # nothing was abandoned


def _after_commit(session: Any) -> None:
    for classpath, kwargs, what in session.info.pop(_PENDING, {}).values():
        threading.Thread(target=stop, args=(classpath, kwargs, what), name=f"stop {what}", daemon=True).start()


def stop(classpath: str, kwargs: dict[str, Any], what: str) -> None:
    """Rebuild the trigger and stop its work, if it is one of ours that has work to stop."""
    from importlib import import_module

    from release_orchestrator.triggers.base import BatchPolledTrigger

    try:
        module, _, name = classpath.rpartition(".")
        trigger_class = getattr(import_module(module), name)
        if not (isinstance(trigger_class, type) and issubclass(trigger_class, BatchPolledTrigger)):
            return
        trigger = trigger_class(**kwargs)
        log.info("%s was abandoned while it waited: stopping %s %s", what, trigger.spec.service, trigger.item_id)
        trigger.stop()
    except Exception:  # noqa: BLE001 - the triggerer's on_kill may still stop it; a failure is logged
        log.warning("Could not stop the work of %s", what, exc_info=True)
