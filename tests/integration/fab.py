"""A second api-server with the FAB auth manager, on the session's environment (same DB, JWT secret, plugins).

Airflow runs one auth manager per api-server, so the gate's FAB case needs an api-server of its own. It is
served under a path (`[api] base_url` http://127.0.0.1:<port>/airflow, as behind a proxy that serves Airflow
at a path), so the gate and the release console are tested there too. It shares everything else with the
session's environment: what a FAB user decides there, the scheduler,
workers and the simple-auth api-server see. Its users and roles live in FAB's tables of the same
metadata database (made by `airflow db migrate` with the provider installed); its users are made with FAB's
own CLI as an operator would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from include.localenv.airflow_api import AirflowAPI
from include.localenv.environment import LocalEnvironment, free_port

PROCESS = "fab-api-server"
BASE_PATH = "/airflow"  # where this api-server serves Airflow (its base_url's path)  # its name among the environment's processes (and its log, process-logs/<name>.log)
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
# A role of FAB's own (no permissions: a group), named in ap-gate-fab.yaml's approvers.
APPROVER_ROLE = "release-managers"
# A role that may read one pipeline only (FAB's per-DAG permission), for the release console's checks.
READER_ROLE, READABLE_PIPELINE = "ap-gate-fab-readers", "ap-gate-fab"
# FAB's `User` role may change task instances; only the gate tells these two apart. fab-reader may only read
# one pipeline.
USERS: dict[str, tuple[str, ...]] = {
    "fab-approver": ("User", APPROVER_ROLE),
    "fab-outsider": ("User",),
    "fab-reader": (READER_ROLE,),
}


@dataclass
class FabApiServer:
    env: LocalEnvironment
    port: int = field(default_factory=free_port)
    setup_seconds: float = 0.0  # FAB's roles and users (five CLI calls)
    startup_seconds: float = 0.0  # from the api-server's start until it answers its health check

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    def airflow_env(self) -> dict[str, str]:
        return {
            **self.env.airflow_env(),
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
        }

    def client(self, user: str) -> AirflowAPI:
        return AirflowAPI(self.url, user, password_of(user))

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 240) -> None:
        started = time.monotonic()
        # FAB's tables (ab_user, ab_role, ...) are there already: the environment's `airflow db migrate`
        # makes them while the FAB provider is installed (a db-manager it declares).
        self._airflow("roles", "create", APPROVER_ROLE, READER_ROLE)
        for user, (role, *more) in USERS.items():
            self._airflow(
                "users", "create", "--username", user, "--password", password_of(user), "--role", role,
                "--email", f"{user}@example.com", "--firstname", user, "--lastname", "Test",
            )  # fmt: skip
            for extra in more:
                self._airflow("users", "add-role", "--username", user, "--role", extra)
        self.setup_seconds = time.monotonic() - started
        started = time.monotonic()
        self.env.start_airflow_process(
            PROCESS,
            ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            env=self.airflow_env(),
            health_url=f"{self.url}/api/v2/monitor/health",
            timeout=timeout,
        )
        self.startup_seconds = time.monotonic() - started

    def grant_read(self, role: str, dag_id: str) -> None:
        """Let `role` read one pipeline: FAB's per-DAG resource exists once its permissions are synced with
        the DAGs the metadata DB holds (the pipeline must be parsed by then)."""
        self._airflow("sync-perm", "--include-dags")
        self._airflow("roles", "add-perms", role, "-r", f"DAG:{dag_id}", "-a", "can_read")

    def stop(self) -> None:
        """Ends the api-server if it runs (also after a failed start)."""
        self.env.stop_process(PROCESS)

    def _airflow(self, *args: str) -> str:
        return self.env.run_airflow_cli(list(args), timeout=300, env=self.airflow_env())


def password_of(user: str) -> str:
    return f"{user}-password"
