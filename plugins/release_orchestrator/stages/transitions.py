"""Transitions: the way into a stage, which someone can disable (with a reason) and enable again.

A disabled transition holds every run at the stage's door (operators/stage_entry.py): the run waits
there, deferred, costing no worker slot, until the transition is enabled again; in a SUPERSEDED
pipeline a newer run coming to wait there supersedes the older one, as at any door. A run that is
in the stage already goes on.

Where it is kept: one Airflow Variable per disabled transition, `release_orchestrator.transition.<dag_id>.<stage>`,
holding who disabled it, when and why (JSON). Workers and the triggerer read Variables through the
Task SDK (they have no database access in Airflow 3). Only the release console's API writes them
(ui/app.py: `PUT /releases/api/pipelines/{dag_id}/transitions/{stage}`, which records the signed-in user
and needs permission to edit the pipeline); the api-server's gate refuses the same change through
Airflow's Variables API or UI (gate/enforcement.py), so nobody can enable a transition unrecorded or
write someone else's name into it.
"""

from __future__ import annotations

import json
from typing import Any

from release_orchestrator.pipeline.syntax import airflow_key

VARIABLE_PREFIX = "release_orchestrator.transition."
MAX_REASON = 300


def variable_key(dag_id: str, stage: str) -> str:
    return f"{VARIABLE_PREFIX}{dag_id}.{airflow_key(stage)}"


def is_transition_key(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(VARIABLE_PREFIX)


def disabled_record(*, by: str, reason: str, at: str) -> str:
    """The Variable's value for a disabled transition."""
    return json.dumps({"disabled_by": by, "reason": reason, "disabled_at": at})


def parse(value: Any) -> dict[str, Any] | None:
    """A stored record as a dict (None: enabled). A value that is not such a record still holds runs:
    whoever put something there meant the transition to be closed."""
    if value is None:
        return None
    try:
        record = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return {
            "disabled_by": None,
            "reason": f"unreadable transition record {str(value)[:100]!r}",
            "disabled_at": None,
        }
    return record


def read(dag_id: str, stage: str) -> dict[str, Any] | None:
    """Whether the transition into `stage` is disabled (its record), through the Task SDK (worker, triggerer)."""
    from airflow.sdk import Variable

    return parse(Variable.get(variable_key(dag_id, stage), default=None))


def describe(record: dict[str, Any]) -> str:
    who = record.get("disabled_by") or "someone"
    when = f" at {record['disabled_at']}" if record.get("disabled_at") else ""
    return f"disabled by {who}{when}: {record.get('reason') or 'no reason given'}"
