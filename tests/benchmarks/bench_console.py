"""The release console's answer times with 50 pipelines x 1,000 runs in the metadata DB.

    .venv/bin/python tests/benchmarks/bench_console.py                       # 50 x 1,000; a few minutes
    .venv/bin/python tests/benchmarks/bench_console.py --pipelines 5 --runs 100 --requests 5

A benchmark script, not a test. It needs PostgreSQL (127.0.0.1:5432, trust auth): it creates a scratch
database, migrates it (`airflow db migrate`), fills it with --pipelines pipelines (DAGs tagged
`release-pipeline`) of --runs finished runs each over the last 120 days (8 actions in 5 stages per run, as
the example pipeline: 85 % succeed, 10 % fail in a deployment, 5 % fail in the build; a source revision with
a commit time on each; console links on the builds), plus one run per pipeline waiting at its approval.
Then it starts ONE Airflow api-server on that database (the plugin's console included; no scheduler, no
DAG files are parsed: the rows are what the console reads) and asks each console endpoint --requests
times over real HTTP as a signed-in user, sequentially, after one warm-up request.

It prints, per endpoint: p50, p95 and max wall time of the HTTP request, and the answer's size; with the
commit, the machine's cores and load averages before and after. Target (docs/ui.md): the overview and the
metrics answer in under 1 s. Afterwards it stops the api-server and drops the database.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from include.localenv import postgres  # noqa: E402
from include.localenv.environment import LocalEnvironment, free_port  # noqa: E402

# (task id, operator, priority weight): the example's shape, earlier stages weigh more.
ACTIONS = [
    ("Source.Checkout", "GitSourceOperator", 8),
    ("Build.Compile", "CodeBuildOperator", 7),
    ("Test.DeployStaging", "CodeDeployOperator", 6),
    ("Test.IntegrationTests", "TestCodeBuildOperator", 5),
    ("Approval.QALeadSignOff", "ManualApprovalOperator", 4),
    ("Deploy.EC2", "CodeDeployOperator", 1),
    ("Deploy.ECS", "CodeDeployOperator", 1),
    ("Deploy.Lambda", "CodeDeployOperator", 1),
]


def populate(pipelines: int, runs: int, seed: int = 7) -> int:
    """Rows through Airflow's own models (this process has the scratch DB's environment); returns rows written."""
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert

    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    written = 0
    with create_session() as session:
        session.execute(insert(DagBundleModel.__table__), [{"name": "bench"}])
        session.execute(
            insert(DagModel.__table__),
            [
                {
                    "dag_id": f"bench-{p:02d}",
                    "bundle_name": "bench",
                    "is_stale": False,
                    "is_paused": False,
                    "max_active_tasks": 16,
                    "max_consecutive_failed_dag_runs": 0,
                    "has_task_concurrency_limits": False,
                }
                for p in range(pipelines)
            ],
        )
        session.execute(
            insert(DagTag.__table__),
            [{"name": "release-pipeline", "dag_id": f"bench-{p:02d}"} for p in range(pipelines)],
        )
        for p in range(pipelines):
            dag_id = f"bench-{p:02d}"
            run_rows, ti_rows, xcom_keys = [], [], []
            for r in range(runs + 1):
                waiting = r == runs  # the newest run waits at its approval
                ended = now - timedelta(minutes=rng.uniform(30, 120 * 24 * 60)) if not waiting else None
                started = (ended or now) - timedelta(minutes=rng.uniform(5, 40))
                outcome = "running" if waiting else rng.choices(["success", "deploy", "build"], [85, 10, 5])[0]
                commit = f"{rng.getrandbits(160):040x}"
                run_rows.append(
                    {
                        "dag_id": dag_id,
                        "run_id": f"webhook__{uuid.uuid4().hex}__{r}",
                        "run_type": "manual",
                        "state": "running" if waiting else ("success" if outcome == "success" else "failed"),
                        "run_after": started,
                        "logical_date": None,
                        "start_date": started,
                        "end_date": ended,
                        "conf": {
                            "source": {
                                "provider": "github",
                                "repository": "acme/webapp",
                                "branch": "main",
                                "commit_id": commit,
                                "commit_message": f"change {r}",
                                "author": "dev",
                                "author_date": (started - timedelta(hours=rng.uniform(0.5, 48))).isoformat(),
                                "commit_url": f"https://github.com/acme/webapp/commit/{commit}",
                            }
                        },
                    }
                )
            ids = session.execute(insert(DagRun.__table__).returning(DagRun.__table__.c.id), run_rows).scalars().all()
            for run_id, row in zip(ids, run_rows):
                states = _states(row["state"], rng.choice(["build", "deploy"]) if row["state"] == "failed" else "")
                for (task_id, operator, weight), state in zip(ACTIONS, states):
                    ti_rows.append(
                        {
                            "id": uuid.uuid4(),
                            "dag_id": dag_id,
                            "run_id": row["run_id"],
                            "task_id": task_id,
                            "map_index": -1,
                            "state": state,
                            "operator": operator,
                            "priority_weight": weight,
                            "pool": "default_pool",
                            "start_date": row["start_date"] if state else None,
                            "end_date": row["end_date"] if state in ("success", "failed") else None,
                        }
                    )
                xcom_keys.append(
                    {
                        "dag_run_id": run_id,
                        "task_id": "Build.Compile",
                        "key": "_codebuild_build",
                        "dag_id": dag_id,
                        "run_id": row["run_id"],
                        "map_index": -1,
                        "value": json.dumps(
                            {
                                "region_name": "us-east-1",
                                "aws_partition": "aws",
                                "build_id": "webapp-build:1",
                                "project_name": "webapp-build",
                            }
                        ),
                    }
                )
            session.execute(insert(TaskInstance.__table__), ti_rows)
            session.execute(insert(XComModel.__table__), xcom_keys)
            written += len(run_rows) + len(ti_rows) + len(xcom_keys)
            session.commit()
    return written


def _states(run_state: str, failed_in: str) -> list[str | None]:
    if run_state == "running":
        return ["success", "success", "success", "success", "deferred", None, None, None]
    if run_state == "success":
        return ["success"] * len(ACTIONS)
    if failed_in == "build":
        return ["success", "failed"] + ["upstream_failed"] * 6
    return ["success"] * 5 + ["success", "failed", "success"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1000, help="finished runs per pipeline")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per endpoint")
    parser.add_argument("--postgres", default=postgres.DEFAULT_SERVER_URL)
    args = parser.parse_args()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(f"commit {commit.strip()}, {os.cpu_count()} cores, load average before {os.getloadavg()}")
    database = postgres.create_scratch_database(args.postgres, "ro_console_bench")
    home = Path(tempfile.mkdtemp(prefix="console-bench-"))
    empty = home / "no-specs"
    empty.mkdir()
    env = LocalEnvironment(home=home, airflow_port=free_port(), database_url=database, pipelines_dir=str(empty))
    env.log_dir.mkdir(parents=True, exist_ok=True)
    (home / "passwords.json").write_text(json.dumps(env.users))
    try:
        started = time.monotonic()
        env.run_airflow_cli(["db", "migrate"], timeout=600)
        os.environ.update(env.airflow_env())  # this process writes the rows through Airflow's models
        rows = populate(args.pipelines, args.runs)
        print(f"{args.pipelines} pipelines x {args.runs} runs: {rows:,} rows in {time.monotonic() - started:.0f} s")
        env.start_airflow_process(
            "api-server", ["api-server", "--host", "127.0.0.1", "--port", str(env.airflow_port), "--workers", "1"],
            health_url=f"{env.airflow_url}/api/v2/monitor/health",
        )  # fmt: skip
        http = httpx.Client(base_url=env.airflow_url, timeout=120)
        token = http.post("/auth/token", json={"username": "admin", "password": env.users["admin"]}).json()
        http.cookies.set("_token", token["access_token"])
        endpoints = [
            "/releases/api/pipelines",
            "/releases/api/metrics?days=30",
            "/releases/api/metrics?days=90",
            "/releases/api/approvals",
            "/releases/api/pipelines/bench-00/runs?limit=25&offset=500",
        ]
        print(f"\n{'endpoint':58} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>10}")
        for path in endpoints:
            answer = http.get(path)
            answer.raise_for_status()
            times = []
            for _ in range(args.requests):
                begun = time.perf_counter()
                http.get(path).raise_for_status()
                times.append((time.perf_counter() - begun) * 1000)
            print(
                f"{path:58} {statistics.median(times):8.0f} {percentile(times, 0.95):8.0f} {max(times):8.0f} "
                f"{len(answer.content):10,}"
            )
    finally:
        env.stop()
        postgres.drop_database(database, args.postgres)
    print(f"\nload average after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
