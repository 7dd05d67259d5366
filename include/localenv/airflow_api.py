"""A small client of Airflow 3's public REST API (/api/v2), as a webhook, a reviewer or the demo uses it."""

from __future__ import annotations

import time
from typing import Any

import httpx


class AirflowAPIError(RuntimeError):
    pass


class AirflowAPI:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self.username = username
        self._login(username, password)

    def _login(self, username: str, password: str) -> None:
        response = self._http.post("/auth/token", json={"username": username, "password": password})
        if response.status_code not in (200, 201):
            raise AirflowAPIError(f"login as {username!r} failed: HTTP {response.status_code} {response.text}")
        self._http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    @property
    def authorization(self) -> str:
        """The `Authorization` header this client sends (a bearer token), for other clients of the same server."""
        return self._http.headers["Authorization"]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise AirflowAPIError(f"{method} /api/v2{path}: HTTP {response.status_code} {response.text[:2000]}")
        return response.json() if response.content else None

    # ---- DAGs and runs ---------------------------------------------------------------------
    def get_dag(self, dag_id: str) -> dict | None:
        try:
            return self.request("GET", f"/dags/{dag_id}")
        except AirflowAPIError as err:
            if "HTTP 404" in str(err):
                return None
            raise

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        """Wait until the dag-processor has parsed the pipeline's DAG."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            time.sleep(1)
        errors = self.request("GET", "/importErrors").get("import_errors", [])
        raise AirflowAPIError(f"DAG {dag_id!r} did not appear within {timeout:.0f}s; import errors: {errors}")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(
        self, dag_id: str, conf: dict | None = None, note: str | None = None, run_id: str | None = None
    ) -> dict:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if note:
            body["note"] = note
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run_created(self, dag_id: str, run_id: str, timeout: float = 60) -> dict:
        """A webhook's runs are created just after its answer (the delivery is recorded first): wait for one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get_run(dag_id, run_id)
            except AirflowAPIError as err:
                if "HTTP 404" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, note: str | None = None) -> Any:
        body: dict[str, Any] = {"new_state": state}
        if note is not None:
            body["note"] = note
        return self.request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json=body)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": True},
        )
        return entry.get("value")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A try's whole log as text: every string of every entry, one entry per line.

        Airflow 3.3's log endpoint serves structured JSON entries only.
        """
        content = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True},
            headers={"Accept": "application/json"},
        )["content"]

        def strings(value: Any):
            if isinstance(value, str):
                yield value
            elif isinstance(value, dict):
                for item in value.values():
                    yield from strings(item)
            elif isinstance(value, list):
                for item in value:
                    yield from strings(item)

        return "\n".join(" ".join(strings(entry)) for entry in content)

    def close(self) -> None:
        self._http.close()
