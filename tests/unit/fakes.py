"""Stand-ins for what Airflow hands an operator at run time, shared by the operator unit tests."""

from __future__ import annotations

import json
from datetime import datetime, timezone


class FakeStateStore:
    """context["task_state_store"]: kept across tries, resumptions and clears of a task instance."""

    def __init__(self):
        self.data = {}

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value, *, retention=None):
        self.data[key] = json.loads(json.dumps(value))


class FakeTaskInstance:
    """The few task-instance attributes and calls the operators use."""

    dag_id = "webapp"
    task_id = "Build.Compile"
    run_id = "manual__2026-01-01"
    map_index = -1

    def __init__(self):
        self.start_date = datetime.now(timezone.utc)
        self.xcom = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


def task_context(ti: FakeTaskInstance | None = None, store: FakeStateStore | None = None) -> dict:
    """The context entries the operators read."""
    ti = ti or FakeTaskInstance()
    return {"ti": ti, "task_instance": ti, "task_state_store": store or FakeStateStore(), "run_id": ti.run_id}
