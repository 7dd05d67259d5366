"""A client of the release console's API (ui/app.py) for the command line: `transition`, `retry`, `stop`.

It signs in as Airflow's own clients do (`POST /auth/token` with a user name and password, under the
simple auth manager and FAB alike) or uses a token given to it, so the API applies the same
authentication and per-pipeline authorization as the UI.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_AIRFLOW_URL = "http://localhost:8080"
CONSOLE_PREFIX = "/releases/api"


class ConsoleError(RuntimeError):
    pass


class ConsoleClient:
    def __init__(
        self, airflow_url: str, *, token: str | None = None, user: str | None = None, password: str | None = None
    ):
        self._http = httpx.Client(base_url=airflow_url.rstrip("/"), timeout=30)
        if not token:
            if not user or password is None:
                raise ConsoleError(
                    "give --token (or AIRFLOW_TOKEN), or --user and --password (or AIRFLOW_USER, AIRFLOW_PASSWORD)"
                )
            response = self._http.post("/auth/token", json={"username": user, "password": password})
            if response.status_code not in (200, 201):
                raise ConsoleError(
                    f"signing in to {airflow_url} as {user!r} failed: HTTP {response.status_code} {response.text[:300]}"
                )
            token = response.json()["access_token"]
        self._http.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_args(cls, args: Any) -> ConsoleClient:
        return cls(
            args.airflow_url or os.environ.get("AIRFLOW_URL") or DEFAULT_AIRFLOW_URL,
            token=args.token or os.environ.get("AIRFLOW_TOKEN"),
            user=args.user or os.environ.get("AIRFLOW_USER"),
            password=args.password if args.password is not None else os.environ.get("AIRFLOW_PASSWORD"),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, f"{CONSOLE_PREFIX}{path}", **kwargs)
        except httpx.HTTPError as error:
            raise ConsoleError(f"{method} {CONSOLE_PREFIX}{path}: {error}") from error
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:500]
            raise ConsoleError(f"{method} {CONSOLE_PREFIX}{path}: HTTP {response.status_code}: {detail}")
        return response.json()

    def transitions(self, pipeline: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/pipelines/{pipeline}/transitions")["transitions"]

    def set_transition(self, pipeline: str, stage: str, *, enabled: bool, reason: str | None = None) -> list[dict]:
        body = {"enabled": enabled, "reason": reason}
        return self.request("PUT", f"/pipelines/{pipeline}/transitions/{stage}", json=body)["transitions"]

    def retry_stage(self, pipeline: str, run_id: str, stage: str, mode: str) -> list[str]:
        path = f"/pipelines/{pipeline}/runs/{quote(run_id, safe='')}/stages/{quote(stage, safe='')}/retry"
        return self.request("POST", path, json={"mode": mode})["cleared"]

    def stop_run(self, pipeline: str, run_id: str, reason: str, mode: str = "ABANDON") -> list[str]:
        path = f"/pipelines/{pipeline}/runs/{quote(run_id, safe='')}/stop"
        return self.request("POST", path, json={"reason": reason, "mode": mode})["stopped"]

    def rollback_stage(self, pipeline: str, stage: str, reason: str, target_run_id: str | None = None) -> dict:
        path = f"/pipelines/{pipeline}/stages/{quote(stage, safe='')}/rollback"
        return self.request("POST", path, json={"reason": reason, "target_run_id": target_run_id})


def transitions_table(transitions: list[dict[str, Any]]) -> str:
    rows = [("stage", "transition", "disabled by", "since", "reason")]
    for t in transitions:
        if t["enabled"]:
            rows.append((t["stage"], "enabled", "", "", ""))
        else:
            rows.append(
                (t["stage"], "DISABLED", t.get("disabled_by") or "", t.get("disabled_at") or "", t.get("reason") or "")
            )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows)
