"""Orchestration overhead of a release: `webapp-release` against a bare Airflow DAG of the same shape.

    .venv/bin/python tests/benchmarks/bench_overhead.py                          # both shapes, 5 + 5 runs each
    .venv/bin/python tests/benchmarks/bench_overhead.py --shape production --runs 9 --consecutive 30
    .venv/bin/python tests/benchmarks/bench_overhead.py --shape embedded --runs 1 --json /tmp/overhead.json

A benchmark script, not a test (pytest does not collect it). For each shape (embedded: SQLite and the
LocalExecutor; production: a scratch PostgreSQL database and the CeleryExecutor on Redis) it starts ONE
local environment (include/localenv/environment.py) whose sandbox builds and deploys take 1 s, and runs in it,
one after the other and alternating, N runs of the example pipeline `webapp-release` and N runs of a bare DAG
of the same shape: the compiled pipeline's TaskGroups, task ids and dependencies (its stages' `Enter` doors
included), each task a PythonOperator that does nothing. The bare DAG is generated from the spec into a temporary folder, which the
dag-processor reads as a second DAG bundle next to `dags/`; both DAGs' dependencies are compared through the
REST API before anything runs.

Runs are started through the REST API with a conf carrying a source revision. The approval is decided as
soon as it waits: the script polls the approval task and, once it is deferred, marks it success through the
REST API as the reviewer qa-lead (what include/localenv/demo.py does). The **approval wait** (from the
moment the approval's trigger was created, i.e. the task deferred, to the moment the PATCH is sent) is not
time our code spends; it is reported on its own and subtracted from the pipeline's wall time.

Per shape it prints:

- trigger -> success wall time (median, max) of the bare DAG and of the pipeline (raw, and minus the approval
  wait): from just before the POST that creates the run to the run's end_date (same clock, same machine);
- the critical-path action time: what the sandbox's builds and deployments (1 s each) take on the critical
  path (Build, DeployStaging, IntegrationTests, one Deploy: 4 s), and the overhead ratio
  (pipeline median (minus approval wait) - critical-path action time) / bare median: what the release costs
  beyond the time AWS needs, in units of what Airflow alone takes for the same shape;
- the critical-path tasks: the longest path through the DAG's dependencies where each task weighs its task
  instance's end_date - start_date (the approval: minus its approval wait), i.e. the actions as Airflow sees
  them (start, wait, end), per task under the table; and the between-actions ratio (pipeline median - that)
  / bare median, the time spent between actions only;
- failed runs; with --consecutive M, M more pipeline runs counted for failures and durations only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

PIPELINE = "webapp-release"
SPEC = REPO / "include" / "pipelines" / "webapp-release.yaml"
BARE = "bench_overhead_bare"
APPROVAL_TASK = "Approval.QALeadSignOff"
REVIEWER = "qa-lead"
REPOSITORY = "acme/webapp"
REDIS_URL = "redis://127.0.0.1:6379/0"
POLL = 0.2  # seconds between two looks at a run (and at its approval)
RUN_TIMEOUT = 600.0
ACTION_SECONDS = 1  # sandbox builds and deployments
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


# --- the bare DAG -----------------------------------------------------------------------------------------


def bare_dag_source(spec: Path, dag_id: str) -> str:
    """A DAG file with the compiled pipeline's task groups, task ids and dependencies (stage doors included),
    each task a PythonOperator that does nothing."""
    from release_orchestrator.pipeline.compiler import build_dag
    from release_orchestrator.pipeline.loader import load_spec

    compiled = build_dag(load_spec(spec))
    lines = [
        f'"""Bare twin of {compiled.dag_id} for tests/benchmarks/bench_overhead.py (generated)."""',
        "from airflow.providers.standard.operators.python import PythonOperator",
        "from airflow.sdk import DAG, TaskGroup",
        "",
        "",
        "def nothing():",
        "    return None",
        "",
        "",
        f"with DAG({dag_id!r}, schedule=None, catchup=False, max_active_runs=1, default_args={{'retries': 0}},",
        "         tags=['benchmark']) as dag:",
        "    tasks = {}",
    ]
    for group_id, group in compiled.task_group.children.items():
        lines.append(f"    with TaskGroup(group_id={group_id!r}):")
        for task in group.children.values():
            lines.append(
                f"        tasks[{task.task_id!r}] = PythonOperator(task_id={task.label!r}, python_callable=nothing)"
            )
    for task in compiled.tasks:
        lines += [f"    tasks[{task.task_id!r}] >> tasks[{down!r}]" for down in sorted(task.downstream_task_ids)]
    return "\n".join(lines) + "\n"


def nominal_seconds(spec: Path) -> dict[str, float]:
    """What the sandbox itself takes for each action: builds and deployments ACTION_SECONDS, the rest nothing."""
    from release_orchestrator.pipeline.loader import load_spec
    from release_orchestrator.pipeline.syntax import airflow_key

    pipeline = load_spec(spec)
    weights = {}
    for stage in pipeline.stages:
        for action in stage.actions:
            busy = action.type in ("build.codebuild", "test.codebuild", "deploy.codedeploy")
            weights[f"{airflow_key(stage.name)}.{airflow_key(action.name)}"] = ACTION_SECONDS if busy else 0.0
    return weights


# --- measuring ----------------------------------------------------------------------------------------------


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def dag_edges(api, dag_id: str) -> dict[str, list[str]]:
    tasks = api.request("GET", f"/dags/{dag_id}/tasks")["tasks"]
    return {t["task_id"]: sorted(t.get("downstream_task_ids") or []) for t in tasks}


def longest_path(edges: dict[str, list[str]], weight: dict[str, float]) -> tuple[float, list[str]]:
    """The heaviest path through the DAG (every task's weight counted once)."""
    best: dict[str, tuple[float, list[str]]] = {}

    def visit(task: str) -> tuple[float, list[str]]:
        if task not in best:
            tails = [visit(d) for d in edges.get(task, [])]
            tail = max(tails, key=lambda t: t[0]) if tails else (0.0, [])
            best[task] = (weight.get(task, 0.0) + tail[0], [task, *tail[1]])
        return best[task]

    return max((visit(t) for t in edges), key=lambda t: t[0])


def run_once(env, api, reviewer, dag_id: str, edges: dict[str, list[str]], label: str) -> dict:
    commit = os.urandom(20).hex()
    conf = {"source": {"commit_id": commit, "branch": "main", "repository": REPOSITORY}}
    started = time.time()
    run_id = api.trigger(dag_id, conf=conf)["dag_run_id"]
    approval_wait = 0.0
    decided = dag_id != PIPELINE  # the bare DAG has nothing to approve
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run = api.get_run(dag_id, run_id)
        if run["state"] in ("success", "failed"):
            break
        if time.monotonic() > deadline:
            env.check_alive()
            api.request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
            run = api.get_run(dag_id, run_id)
            run["state"] = "timed out"
            break
        if not decided:
            ti = api.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{APPROVAL_TASK}")
            if ti["state"] == "deferred" and ti.get("trigger"):
                deferred_at = parse_time(ti["trigger"]["created_date"])
                sent = time.time()
                reviewer.set_task_state(
                    dag_id, run_id, APPROVAL_TASK, "success", note=f"Approved by {REVIEWER} (bench_overhead)"
                )
                approval_wait = max(0.0, sent - deferred_at)
                decided = True
            elif ti["state"] in ("failed", "upstream_failed", "skipped"):
                decided = True
        time.sleep(POLL)
    ended = parse_time(run.get("end_date")) or time.time()
    tis = api.task_instances(dag_id, run_id)
    durations = {}
    for ti in tis:
        start, end = parse_time(ti.get("start_date")), parse_time(ti.get("end_date"))
        durations[ti["task_id"]] = (end - start) if start is not None and end is not None else 0.0
    if APPROVAL_TASK in durations and dag_id == PIPELINE:
        durations[APPROVAL_TASK] = max(0.0, durations[APPROVAL_TASK] - approval_wait)
    critical, path = longest_path(edges, durations)
    result = {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": run["state"],
        "wall": ended - started,
        "approval_wait": approval_wait,
        "net": ended - started - approval_wait,
        "critical_path": critical,
        "path": path,
        "task_seconds": durations,
        "task_states": {ti["task_id"]: ti["state"] for ti in tis},
    }
    extra = f", approval wait {approval_wait:.1f} s" if dag_id == PIPELINE else ""
    print(
        f"[bench] {label}: {run['state']} in {result['wall']:.1f} s{extra}, critical-path actions {critical:.1f} s",
        flush=True,
    )
    return result


def wait_until_healthy(api, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        health = api.request("GET", "/monitor/health")
        parts = ("scheduler", "triggerer", "dag_processor")
        if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Airflow not healthy after {timeout:.0f} s: {health}")
        time.sleep(1)


def measure_shape(shape: str, runs: int, consecutive: int, keep: bool) -> dict:
    from include.localenv import postgres
    from include.localenv.airflow_api import AirflowAPI
    from include.localenv.environment import LocalEnvironment, free_port
    from include.localenv.redis_queue import forget_celery_queue

    work = Path(tempfile.mkdtemp(prefix=f"bench-overhead-{shape}-"))
    bundle = work / "bare-dags"
    bundle.mkdir()
    (bundle / "bench_overhead_bare.py").write_text(bare_dag_source(SPEC, BARE))
    bundles = [
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},  # dags/, as usual
        {"name": "bench-overhead", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(bundle)}},
    ]
    production = shape == "production"
    database_url = postgres.create_scratch_database(postgres.DEFAULT_SERVER_URL, "ro_bench") if production else None
    env = LocalEnvironment(
        home=work / "airflow",
        airflow_port=free_port(),
        sandbox_port=free_port(),
        build_seconds=ACTION_SECONDS,
        deploy_seconds=ACTION_SECONDS,
        database_url=database_url,
        celery_broker_url=REDIS_URL if production else None,
        extra_env={"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles)},
    )
    print(f"[bench] {shape} shape: home {env.home}", flush=True)
    result: dict = {"shape": shape, "pipeline": [], "bare": [], "consecutive": []}
    try:
        with env:
            api = AirflowAPI(env.airflow_url, "admin", env.users["admin"])
            reviewer = AirflowAPI(env.airflow_url, REVIEWER, env.users[REVIEWER])
            for dag_id in (PIPELINE, BARE):
                api.wait_for_dag(dag_id, timeout=300)
            wait_until_healthy(api)
            edges = {dag_id: dag_edges(api, dag_id) for dag_id in (PIPELINE, BARE)}
            if edges[PIPELINE] != edges[BARE]:
                raise RuntimeError(f"the bare DAG's shape differs from {PIPELINE}'s:\n{edges[PIPELINE]}\n{edges[BARE]}")
            result["tasks"] = len(edges[PIPELINE])
            result["dependencies"] = sum(len(d) for d in edges[PIPELINE].values())
            result["nominal_critical_path"], _ = longest_path(edges[PIPELINE], nominal_seconds(SPEC))
            for i in range(runs):
                result["pipeline"].append(
                    run_once(env, api, reviewer, PIPELINE, edges[PIPELINE], f"{shape} {PIPELINE} {i + 1}/{runs}")
                )
                result["bare"].append(run_once(env, api, reviewer, BARE, edges[BARE], f"{shape} bare {i + 1}/{runs}"))
            for i in range(consecutive):
                result["consecutive"].append(
                    run_once(
                        env, api, reviewer, PIPELINE, edges[PIPELINE], f"{shape} consecutive {i + 1}/{consecutive}"
                    )
                )
    finally:
        if database_url:
            postgres.drop_database(database_url, postgres.DEFAULT_SERVER_URL)
        if production:
            forget_celery_queue(REDIS_URL, env.celery_queue)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return result


# --- reporting ----------------------------------------------------------------------------------------------


def summarize(result: dict) -> dict:
    def stats(runs: list[dict], key: str) -> dict:
        values = [r[key] for r in runs if r["state"] == "success"] or [r[key] for r in runs]
        return {"median": statistics.median(values), "max": max(values)} if values else {"median": 0.0, "max": 0.0}

    pipeline, bare = result["pipeline"], result["bare"]
    summary = {
        "shape": result["shape"],
        "runs": len(pipeline),
        "pipeline_failed": sum(r["state"] != "success" for r in pipeline),
        "bare_failed": sum(r["state"] != "success" for r in bare),
        "pipeline_wall": stats(pipeline, "wall"),
        "pipeline_net": stats(pipeline, "net"),
        "approval_wait": stats(pipeline, "approval_wait"),
        "critical_path": stats(pipeline, "critical_path"),
        "bare_wall": stats(bare, "wall"),
        "bare_critical_path": stats(bare, "critical_path"),
        "nominal_critical_path": result.get("nominal_critical_path", 0.0),
        "tasks": result.get("tasks"),
        "dependencies": result.get("dependencies"),
    }
    ok = [r for r in pipeline if r["state"] == "success"] or pipeline
    if ok:
        summary["task_seconds_median"] = {
            task: statistics.median(r["task_seconds"].get(task, 0.0) for r in ok) for task in ok[0]["path"]
        }
    bare_median = summary["bare_wall"]["median"]
    # The ratio of the target: what the pipeline costs beyond the time its actions need in AWS (the sandbox's
    # own time on the critical path), against what Airflow alone takes for the bare DAG.
    summary["overhead"] = summary["pipeline_net"]["median"] - summary["nominal_critical_path"]
    summary["overhead_ratio"] = summary["overhead"] / bare_median if bare_median else float("nan")
    # Between actions only: the actions' task instance times (start, wait, end included) subtracted instead.
    summary["between_actions"] = summary["pipeline_net"]["median"] - summary["critical_path"]["median"]
    summary["between_actions_ratio"] = summary["between_actions"] / bare_median if bare_median else float("nan")
    if result["consecutive"]:
        summary["consecutive"] = {
            "runs": len(result["consecutive"]),
            "failed": sum(r["state"] != "success" for r in result["consecutive"]),
            "net": stats(result["consecutive"], "net"),
            "wall": stats(result["consecutive"], "wall"),
        }
    return summary


def print_table(header, lines) -> None:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |")


def print_summary(summaries: list[dict]) -> None:
    def s(value: float) -> str:
        return f"{value:.1f} s"

    print()
    print(
        f"{PIPELINE} vs. a bare DAG of the same shape ({summaries[0]['tasks']} tasks, "
        f"{summaries[0]['dependencies']} dependencies); sandbox builds and deployments take {ACTION_SECONDS} s"
    )
    header = (
        "shape",
        "runs",
        "bare median",
        "bare max",
        "pipeline median (raw)",
        "pipeline max (raw)",
        "approval wait (median)",
        "critical-path action time",
        "overhead ratio",
        "critical-path tasks (median)",
        "between-actions ratio",
        "failed",
    )
    lines = []
    for x in summaries:
        lines.append(
            [
                x["shape"],
                str(x["runs"]),
                s(x["bare_wall"]["median"]),
                s(x["bare_wall"]["max"]),
                f"{s(x['pipeline_net']['median'])} ({s(x['pipeline_wall']['median'])})",
                f"{s(x['pipeline_net']['max'])} ({s(x['pipeline_wall']['max'])})",
                s(x["approval_wait"]["median"]),
                s(x["nominal_critical_path"]),
                f"{x['overhead_ratio']:.2f}",
                s(x["critical_path"]["median"]),
                f"{x['between_actions_ratio']:.2f}",
                f"pipeline {x['pipeline_failed']}, bare {x['bare_failed']}",
            ]
        )
    print_table(header, lines)
    print(
        "pipeline times are minus the approval wait (raw: trigger -> success as is); overhead ratio = (pipeline "
        "median - critical-path action time, what the sandbox's builds and deployments take on the critical "
        "path) / bare median; between-actions ratio = (pipeline median - the critical-path tasks' own times) / "
        "bare median"
    )
    for x in summaries:
        per_task = ", ".join(f"{t} {v:.1f}" for t, v in (x.get("task_seconds_median") or {}).items())
        print(
            f"{x['shape']}: pipeline critical path (median s per task): {per_task}; the sandbox's own time on it "
            f"{x['nominal_critical_path']:.0f} s; the bare DAG's critical path {s(x['bare_critical_path']['median'])}"
        )
        if "consecutive" in x:
            c = x["consecutive"]
            print(
                f"{x['shape']}: {c['runs']} consecutive pipeline runs: {c['failed']} failed; median "
                f"{s(c['net']['median'])}, max {s(c['net']['max'])} (minus approval wait; raw median "
                f"{s(c['wall']['median'])}, max {s(c['wall']['max'])})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("embedded", "production", "both"), default="both")
    parser.add_argument("--runs", type=int, default=5, help="runs of the pipeline and of the bare DAG (default 5)")
    parser.add_argument(
        "--consecutive",
        type=int,
        default=0,
        help="an extra series of pipeline runs, counted for failures and durations (default 0)",
    )
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME (logs) of each shape")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.consecutive < 0:
        parser.error("--runs must be at least 1 and --consecutive at least 0")

    from include.localenv.redis_queue import production_services_missing

    shapes = ["embedded", "production"] if args.shape == "both" else [args.shape]
    if "production" in shapes and (missing := production_services_missing(REDIS_URL)):
        parser.error(f"the production shape needs PostgreSQL and Redis on 127.0.0.1: {missing}")
    results = [measure_shape(shape, args.runs, args.consecutive, args.keep) for shape in shapes]
    summaries = [summarize(r) for r in results]
    print_summary(summaries)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summaries, "runs": results}, indent=2))
    failed = sum(x["pipeline_failed"] + x["bare_failed"] + x.get("consecutive", {}).get("failed", 0) for x in summaries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
