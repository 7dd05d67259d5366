"""The local environment: the sandbox AWS plus an Airflow 3 installation, as real processes on loopback.

Used by `make demo`, `make up` and the integration tests (one environment per test session).
By default Airflow runs in its embedded shape: SQLite metadata DB under a project-local AIRFLOW_HOME,
LocalExecutor, and api-server, scheduler, dag-processor and triggerer as separate processes. Given a
PostgreSQL database and a Redis broker it runs in the production shape instead: CeleryExecutor with a
Celery worker and the webhook run starter (WEBHOOK_STARTER=separate, as docker-compose.yaml) as further
processes (the integration tests use that shape).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from include.sandbox import github as sandbox_github
from include.sandbox import resources

REPO_ROOT = Path(__file__).resolve().parents[2]

AIRFLOW_PROCESSES = {
    # name -> arguments after `airflow`. The scheduler's and triggerer's log servers would listen on
    # every interface; LocalExecutor writes logs where the api-server reads them, so they are not needed.
    "api-server": [],  # host and port filled in by LocalEnvironment.airflow_processes
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


class LocalEnvironmentError(RuntimeError):
    """A clear, user-facing reason why the environment could not start."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Ports handed out by free_port stay reserved (a held lock file) until this process exits, so parallel
# test workers and benchmarks never pick the same one.
_PORT_LOCKS: list = []
_PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "release-orchestrator-ports"
_PORTS_FLOOR = 15000


def _ephemeral_port_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port nobody listens on, taken from below the kernel's ephemeral range.

    A port the kernel picks for `bind(0)` is an ephemeral one: between handing it out and the server
    binding it, any outgoing connection (to PostgreSQL, Redis, the sandbox) may be given the same
    number, and the server then fails with "address already in use". Ports below the ephemeral range
    are never handed to outgoing connections.
    """
    ceiling = _ephemeral_port_floor()
    if ceiling - _PORTS_FLOOR < 1000:  # an unusual kernel setting: fall back to the kernel's choice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    _PORT_LOCK_DIR.mkdir(exist_ok=True)
    for _ in range(200):
        port = random.randrange(_PORTS_FLOOR, ceiling)
        lock = open(_PORT_LOCK_DIR / f"{port}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        if port_is_free(port):
            _PORT_LOCKS.append(lock)
            return port
        lock.close()
    raise LocalEnvironmentError(f"no free loopback port found between {_PORTS_FLOOR} and {ceiling}")


@dataclass
class LocalEnvironment:
    home: Path = REPO_ROOT / ".airflow"
    airflow_port: int = resources.AIRFLOW_PORT
    sandbox_port: int = resources.SANDBOX_PORT
    build_seconds: float = 6
    deploy_seconds: float = 8
    users: dict[str, str] = field(
        default_factory=lambda: {
            "admin": "admin",
            "qa-lead": "qa-lead",
            "release-manager": "release-manager",
            "developer": "developer",
        }
    )
    # qa-lead is the example's approver; release-manager approves by role (`role:user`) in the tests.
    user_roles: dict[str, str] = field(
        default_factory=lambda: {"admin": "admin", "qa-lead": "op", "release-manager": "user", "developer": "viewer"}
    )
    pipelines_dir: str = str(REPO_ROOT / "include" / "pipelines")  # one or more dirs, os.pathsep-separated
    database_url: str | None = None  # SQLAlchemy URL of the metadata DB; None: SQLite under `home`
    celery_broker_url: str | None = None  # e.g. redis://127.0.0.1:6379/0: CeleryExecutor instead of LocalExecutor
    celery_workers: int = 1  # with the CeleryExecutor: this many worker processes, each with its own hostname
    extra_env: dict[str, str] = field(default_factory=dict)
    echo: bool = True
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)

    # ---- addresses -------------------------------------------------------------------------
    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def log_dir(self) -> Path:
        return self.home / "process-logs"

    # ---- configuration ---------------------------------------------------------------------
    def airflow_env(self) -> dict[str, str]:
        """Environment of every Airflow process (and of any `airflow` CLI call against this home)."""
        env = dict(os.environ)
        pythonpath = os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT)])
        aws_conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": self.sandbox_url, "region_name": resources.REGION},
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONPATH": pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if self.celery_broker_url else "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                    f"{user}:{self.user_roles.get(user, 'viewer')}" for user in self.users
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url or f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.airflow_port),
                "AIRFLOW__API__BASE_URL": self.airflow_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": "local-environment-secret-key",
                "AIRFLOW__API_AUTH__JWT_SECRET": "local-environment-jwt-secret",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # Pick up new and changed specs quickly; the defaults are tuned for big deployments.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                # A dead triggerer's triggers go to a live one once its heartbeat is this old (default 30 s);
                # with a heartbeat every 2 s, 10 s is still five missed beats.
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws_conn),
                # GitHub sources fetch commits and archives from the sandbox's GitHub API.
                "AIRFLOW_CONN_GITHUB_DEFAULT": json.dumps(
                    {"conn_type": "http", "host": f"{self.sandbox_url}/_github", "password": sandbox_github.TOKEN}
                ),
                "AWS_DEFAULT_REGION": resources.REGION,
                "RELEASE_ORCHESTRATOR_PIPELINES_DIR": str(self.pipelines_dir),
                "RELEASE_ORCHESTRATOR_POLL_INTERVAL": "1",
                "NO_PROXY": "*",
            }
        )
        if self.celery_broker_url:
            if not self.database_url:
                raise LocalEnvironmentError(
                    "the CeleryExecutor needs a PostgreSQL metadata DB: pass database_url "
                    "(SQLite cannot be shared by the scheduler and the Celery worker)"
                )
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": self.celery_broker_url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.database_url.replace("+psycopg2", ""),
                    # A queue of this environment's own, so two environments sharing one Redis never
                    # run each other's tasks.
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.celery_queue,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "16",
                    "RELEASE_ORCHESTRATOR_WEBHOOK_STARTER": "separate",
                }
            )
        env.update(self.extra_env)
        return env

    @property
    def celery_queue(self) -> str:
        return f"release-orchestrator-{self.airflow_port}"

    @property
    def airflow_processes(self) -> dict[str, list[str]]:
        """Each process's command after `python -m`."""
        processes = {name: ["airflow", *args] for name, args in AIRFLOW_PROCESSES.items()}
        processes["api-server"] = [
            "airflow",
            "api-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.airflow_port),
            "--workers",
            "1",
        ]
        if self.celery_broker_url:
            # Logs are written to the shared log folder and read from there, so no log server.
            for n in range(1, max(1, self.celery_workers) + 1):
                name, hostname = (
                    ("celery-worker", self.celery_queue)
                    if n == 1
                    else (f"celery-worker-{n}", f"{self.celery_queue}-{n}")
                )
                processes[name] = [
                    "airflow",
                    "celery",
                    "worker",
                    "--queues",
                    self.celery_queue,
                    "--skip-serve-logs",
                    "--celery-hostname",
                    f"{hostname}@%h",
                    "--without-gossip",
                    "--without-mingle",
                ]
            # As docker-compose.yaml: the runs of webhook deliveries are created by a process of their own.
            processes["webhook-starter"] = ["release_orchestrator.webhooks.starter", "--poll-seconds", "0.2"]
        return processes

    # ---- lifecycle -------------------------------------------------------------------------
    def check_ports(self) -> None:
        for name, port in (("Airflow api-server", self.airflow_port), ("sandbox AWS", self.sandbox_port)):
            if not port_is_free(port):
                raise LocalEnvironmentError(
                    f"port {port} on 127.0.0.1 (for the {name}) is already in use. Stop whatever holds it "
                    f"(`lsof -i :{port}` shows it; a `make up` still running?), then try again."
                )

    def start(self) -> None:
        self.check_ports()
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps(self.users))
        self._say(f"starting the sandbox AWS on {self.sandbox_url}")
        self._spawn(
            "sandbox",
            [
                sys.executable,
                "-m",
                "include.sandbox.server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.sandbox_port),
                "--build-seconds",
                str(self.build_seconds),
                "--deploy-seconds",
                str(self.deploy_seconds),
                "--seed",
            ],
        )
        self._say("migrating the Airflow metadata DB")
        self._run_airflow(["db", "migrate"], timeout=600)
        self._wait_http(f"{self.sandbox_url}/_sandbox/health", "sandbox", timeout=120, seeded=True)
        processes = self.airflow_processes
        self._say(f"starting Airflow (api-server on {self.airflow_url}, {', '.join(list(processes)[1:])})")
        for name, args in processes.items():
            self._spawn(name, [sys.executable, "-m", *args], env=self.airflow_env())
        self._wait_for_api_server(timeout=180)

    def _wait_for_api_server(self, timeout: float) -> None:
        self._wait_http(f"{self.airflow_url}/api/v2/monitor/health", "api-server", timeout=timeout)
        # The api-server builds its Execution API on the first request to it (about 4 s here): make that
        # request now, so the first task of the first run does not wait for it.
        self._wait_http(f"{self.airflow_url}/execution/health", "api-server", timeout=timeout, request_timeout=30)

    def stop(self) -> None:
        """Stop every process this environment started (and their children), politely first."""
        self._stop(list(self._procs.values()))
        self._procs.clear()

    def start_airflow_process(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        health_url: str | None = None,
        timeout: float = 180,
    ) -> None:
        """Start one more Airflow process (`airflow <args>`) as part of this environment, optionally waiting
        until `health_url` answers; `stop_process` or `stop` ends it, `check_alive` watches it."""
        self._spawn(name, [sys.executable, "-m", "airflow", *args], env=env or self.airflow_env())
        if health_url:
            self._wait_http(health_url, name, timeout=timeout)

    def stop_process(self, name: str) -> None:
        """Stop one process of this environment (and its children), politely first."""
        proc = self._procs.pop(name, None)
        if proc is not None:
            self._stop([proc])

    def _stop(self, procs: list[subprocess.Popen]) -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for proc in procs:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                pass
            try:  # children (task runners, serve-logs) may outlive their parent: end the whole group
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def __enter__(self) -> LocalEnvironment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL an Airflow process and its children, then start it again (tests of crash recovery)."""
        self.kill(name)
        self.restart(name)

    def kill(self, name: str) -> None:
        """SIGKILL an Airflow process and its whole process group (a crash: no cleanup); `restart` starts it again."""
        proc = self._procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def restart(self, name: str, timeout: float = 180) -> None:
        """Start a killed Airflow process again; for the api-server, wait until it answers its health check."""
        proc = self._procs[name]
        if proc.poll() is None:
            raise LocalEnvironmentError(f"the {name} process (pid {proc.pid}) is still running: kill it first")
        self._spawn(name, [sys.executable, "-m", *self.airflow_processes[name]], env=self.airflow_env())
        if name == "api-server":
            self._wait_for_api_server(timeout=timeout)

    def check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise LocalEnvironmentError(
                    f"the {name} process exited with code {proc.returncode}; its log: {self.log_dir / (name + '.log')}\n"
                    + self.tail_log(name)
                )

    def tail_log(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ---- helpers ---------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if self.echo:
            print(f"[env] {message}", flush=True)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc_env = env or {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        # Own process group, so stop() ends the process and everything it forked.
        self._procs[name] = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=proc_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def run_airflow_cli(self, args: list[str], timeout: float = 120, env: dict[str, str] | None = None) -> str:
        """`airflow <args>` against this environment (or with `env`, e.g. another auth manager's)."""
        return self._run_airflow(args, timeout, env)

    def _run_airflow(self, args: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            cwd=REPO_ROOT,
            env=env or self.airflow_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise LocalEnvironmentError(
                f"`airflow {' '.join(args)}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def _wait_http(self, url: str, what: str, timeout: float, seeded: bool = False, request_timeout: float = 2) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                response = httpx.get(url, timeout=request_timeout)
                if response.status_code == 200 and (not seeded or response.json().get("seeded", True)):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise LocalEnvironmentError(f"the {what} did not answer on {url} within {timeout:.0f}s\n{self.tail_log(what)}")
