"""N CodeBuild builds waiting at once: worker slots held, CodeBuild calls per poll interval, CPU of the wait.

    .venv/bin/python tests/benchmarks/bench_build_waits.py                      # N = 1, 50, 200; ~4 minutes
    .venv/bin/python tests/benchmarks/bench_build_waits.py --airflow            # + N = 1, 50 in real Airflow
    .venv/bin/python tests/benchmarks/bench_build_waits.py --sizes 500 --seconds 120 --interval 10

A benchmark script, not a test (pytest does not collect it). It starts the sandbox AWS in this process
(``include.sandbox.server.start_sandbox``), creates a CodeBuild project whose builds hang (fault ``hang``:
IN_PROGRESS until stopped) and counts, inside the sandbox, every CodeBuild call it answers.

Triggerer part (always), for each N:

1. this process starts N builds;
2. a separate *waiting process* (this script with ``--waiter``) does what the triggerer does with N deferred
   build tasks: it builds N ``CodeBuildBuildTrigger`` objects and runs them as tasks of one asyncio event
   loop, consuming ``trigger.run()``. Once the shared poller has done its first round (client created,
   connection read), it measures for ``--seconds``: the poller's counters (``api_calls``, ``rounds``), its
   own CPU time (``resource.getrusage(RUSAGE_SELF)``: the event loop and boto3's threads) and its child
   processes (psutil). Then it stops the N builds and checks that every trigger fires a ``failed`` event
   with status STOPPED, so the waits were real;
3. this process reports the BatchGetBuilds calls the sandbox answered during the window (independent of the
   poller's own counters) and the largest number of ids in one call.

No Airflow worker exists in that part: the only processes are this one (the sandbox) and the waiting one,
which has no children. That the deferred tasks hold no worker slot in Airflow itself is what ``--airflow``
measures: it starts the local Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor with
16 slots) with a DAG of N mapped ``CodeBuildOperator`` tasks (N = 1, 50) pointed at this process's
sandbox, waits until all N are deferred, then for ``--seconds`` samples the task instance states through the
REST API (running and queued ones are what hold worker slots) and the CPU time of the triggerer's process
tree (psutil), next to the triggerer's idle CPU measured before any task ran.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for path in (REPO, REPO / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

PROJECT = "bench-waits"
REGION = "us-east-1"
BUILDSPEC = "version: 0.2\nphases:\n  build:\n    commands:\n      - make\n"


def aws_conn(url: str) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": url, "region_name": REGION},
        }
    )


def codebuild_client(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "codebuild",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard"}, max_pool_connections=50),
    )


# --- the waiting process ----------------------------------------------------------------------------------


def waiter_main(config: dict) -> None:
    """Run the triggers of config["ids"] in one event loop, like the triggerer; print one JSON line."""
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = aws_conn(config["url"])
    import psutil

    from release_orchestrator.triggers.base import MIN_DEFER_SECONDS
    from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger
    from release_orchestrator.triggers.poller import all_pollers

    async def main() -> dict:
        triggers = [
            CodeBuildBuildTrigger(
                build_id=build_id, aws_conn_id="aws_default", region_name=REGION, poll_interval=config["interval"]
            )
            for build_id in config["ids"]
        ]
        events: dict[str, dict] = {}

        async def consume(trigger) -> None:
            async for event in trigger.run():
                events[trigger.build_id] = event.payload
                return

        tasks = [asyncio.create_task(consume(t)) for t in triggers]
        while not all_pollers() or all_pollers()[0].rounds < 1 or all_pollers()[0].api_calls < 1:
            await asyncio.sleep(0.05)
        # Let the first round's calls finish before the window opens.
        await asyncio.sleep(0.5)
        [poller] = all_pollers()
        before, usage0, t0 = dict(poller.stats), resource.getrusage(resource.RUSAGE_SELF), time.time()
        await asyncio.sleep(config["seconds"])
        after, usage1, t1 = dict(poller.stats), resource.getrusage(resource.RUSAGE_SELF), time.time()
        children = len(psutil.Process().children(recursive=True))
        threads = threading.active_count()
        still_waiting = sum(not task.done() for task in tasks)

        # End the builds; every trigger must fire with what happened to its build.
        client = codebuild_client(config["url"])
        await asyncio.to_thread(lambda: [client.stop_build(id=build_id) for build_id in config["ids"]])
        stopped_at = time.time()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=3 * config["interval"] + MIN_DEFER_SECONDS + 60)
        fired_after = time.time() - stopped_at
        return {
            "t0": t0,
            "t1": t1,
            "window": t1 - t0,
            "api_calls": after["api_calls"] - before["api_calls"],
            "rounds": after["rounds"] - before["rounds"],
            "ids_polled": after["ids_polled"] - before["ids_polled"],
            "throttled": after["throttled"] - before["throttled"],
            "waiting_in_poller": before["waiting"],
            "still_waiting": still_waiting,
            "cpu": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
            "max_rss_mb": usage1.ru_maxrss / 1024,
            "children": children,
            "threads": threads,
            "events_stopped": sum(
                1 for e in events.values() if e.get("status") == "failed" and e.get("item_status") == "STOPPED"
            ),
            "fired_after": fired_after,
        }

    print(json.dumps(asyncio.run(main())), flush=True)


# --- the sandbox, and counting what it answers -------------------------------------------------------------


class CallLog:
    """Every CodeBuild call the sandbox answers: (time, operation, number of ids)."""

    def __init__(self, sandbox) -> None:
        self.calls: list[tuple[float, str, int]] = []
        self._lock = threading.Lock()
        emulator = sandbox.app.codebuild
        original = emulator.handle

        def handle(operation, params, region, caller):
            with self._lock:
                self.calls.append((time.time(), operation, len(params.get("ids") or [])))
            return original(operation, params, region, caller)

        emulator.handle = handle

    def between(self, start: float, end: float, operation: str) -> list[tuple[float, int]]:
        with self._lock:
            return [(at, n) for at, op, n in self.calls if start <= at <= end and op == operation]


def polling_figures(seen: list[tuple[float, int]], window: float, interval: float) -> dict:
    """Calls seen by the sandbox, grouped into rounds (calls less than half an interval apart)."""
    rounds, last = 0, None
    for at, _ in sorted(seen):
        if last is None or at - last > interval / 2:
            rounds += 1
        last = at
    return {
        "sandbox_calls": len(seen),
        "sandbox_rounds": rounds,
        "sandbox_calls_per_round": len(seen) / max(1, rounds),
        "calls_per_interval": len(seen) / (window / interval),
        "max_ids_per_call": max((n for _, n in seen), default=0),
    }


def start_builds(client, n: int) -> list[str]:
    return [
        client.start_build(projectName=PROJECT, sourceVersion=f"refs/heads/bench-{i}")["build"]["id"] for i in range(n)
    ]


def setup_sandbox():
    from include.sandbox.client import SandboxClient
    from include.sandbox.server import start_sandbox

    sandbox = start_sandbox(port=0, build_seconds=2)
    client = codebuild_client(sandbox.url)
    client.create_project(
        name=PROJECT,
        source={"type": "GITHUB", "location": "https://github.com/acme/bench.git", "buildspec": BUILDSPEC},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        serviceRole="arn:aws:iam::123456789012:role/bench",
        timeoutInMinutes=480,
    )
    SandboxClient(sandbox.url).set_fault("codebuild", PROJECT, "hang")
    return sandbox, client, CallLog(sandbox)


# --- part 1: the triggerer's way ---------------------------------------------------------------------------


def measure_triggers(url: str, client, calls: CallLog, n: int, seconds: float, interval: float) -> dict:
    ids = start_builds(client, n)
    config = {"url": url, "ids": ids, "seconds": seconds, "interval": interval}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, __file__, "--waiter", json.dumps(config)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=seconds + 600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"waiting process failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(
        polling_figures(calls.between(result["t0"], result["t1"], "BatchGetBuilds"), result["window"], interval)
    )
    result.update(
        n=n,
        interval=interval,
        calls_per_round=result["api_calls"] / max(1, result["rounds"]),
        cpu_per_minute=result["cpu"] / result["window"] * 60,
    )
    return result


def print_triggers_table(rows: list[dict]) -> None:
    print()
    print(
        "Triggerer way: N triggers in one asyncio loop in one process "
        f"(poll interval {rows[0]['interval']:g} s, window {rows[0]['window']:.0f} s)"
    )
    header = (
        "N",
        "child procs",
        "waiting",
        "poller rounds",
        "poller calls/round",
        "target ceil(N/100)",
        "sandbox calls/round",
        "max ids/call",
        "CPU s/min",
        "RSS MB",
        "threads",
        "fired when stopped",
    )
    lines = [
        [
            str(r["n"]),
            str(r["children"]),
            str(r["waiting_in_poller"]),
            str(r["rounds"]),
            f"{r['calls_per_round']:.2f}",
            str(math.ceil(r["n"] / 100)),
            f"{r['sandbox_calls_per_round']:.2f} ({r['sandbox_calls']} in {r['sandbox_rounds']})",
            str(r["max_ids_per_call"]),
            f"{r['cpu_per_minute']:.3f}",
            f"{r['max_rss_mb']:.0f}",
            str(r["threads"]),
            f"{r['events_stopped']}/{r['n']} in {r['fired_after']:.1f} s",
        ]
        for r in rows
    ]
    print_table(header, lines)


def print_table(header, lines) -> None:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |")


# --- part 2: real Airflow -------------------------------------------------------------------------------------


DAG_FILE = """\
from airflow.sdk import DAG

from release_orchestrator.operators.codebuild import CodeBuildOperator

for n in {sizes!r}:
    with DAG(f"bench_build_waits_{{n}}", schedule=None, catchup=False, max_active_runs=1,
             max_active_tasks=max(n, 16), tags=["benchmark"]) as dag:
        CodeBuildOperator.partial(
            task_id="build", project_name="{project}", poll_interval={interval}, aws_conn_id="aws_default",
            region_name="{region}",
        ).expand(source_version=[f"refs/heads/bench-{{n}}-{{i}}" for i in range(n)])
"""


def tree_cpu(pid: int) -> float:
    import psutil

    total = 0.0
    try:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def measure_airflow(
    sandbox_url: str, client, calls: CallLog, sizes: list[int], seconds: float, interval: float
) -> tuple[float, list[dict]]:
    from include.localenv.airflow_api import AirflowAPI
    from include.localenv.environment import LocalEnvironment, free_port

    work = Path(tempfile.mkdtemp(prefix="bench-build-waits-"))
    dags = work / "dags"
    dags.mkdir()
    (dags / "bench_build_waits.py").write_text(
        DAG_FILE.format(sizes=sizes, project=PROJECT, interval=interval, region=REGION)
    )
    env = LocalEnvironment(
        home=work / "airflow",
        airflow_port=free_port(),
        sandbox_port=free_port(),
        echo=True,
        pipelines_dir=str(dags),
        # The DAG above, against the sandbox of this process (where the calls are counted).
        extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "AIRFLOW_CONN_AWS_DEFAULT": aws_conn(sandbox_url)},
    )
    rows = []
    with env:
        api = AirflowAPI(env.airflow_url, "admin", env.users["admin"])
        triggerer = env._procs["triggerer"].pid
        for n in sizes:
            api.wait_for_dag(f"bench_build_waits_{n}", timeout=300)
        # The triggerer's own cost with nothing to wait for (heartbeats, DB, its loop).
        time.sleep(10)
        cpu0, t0 = tree_cpu(triggerer), time.time()
        time.sleep(min(seconds, 30))
        idle = (tree_cpu(triggerer) - cpu0) / (time.time() - t0) * 60
        print(f"[bench] triggerer idle: {idle:.2f} CPU s/min", flush=True)
        for i, n in enumerate(sizes):
            rows.append(
                measure_airflow_run(api, client, calls, n, seconds, interval, triggerer, idle, last=i == len(sizes) - 1)
            )
    return idle, rows


def measure_airflow_run(api, client, calls, n, seconds, interval, triggerer, idle, last: bool) -> dict:
    dag_id = f"bench_build_waits_{n}"
    started = time.time()
    run_id = api.trigger(dag_id)["dag_run_id"]

    def states() -> dict[str, int]:
        counts: dict[str, int] = {}
        for ti in api.task_instances(dag_id, run_id):
            counts[ti["state"] or "none"] = counts.get(ti["state"] or "none", 0) + 1
        return counts

    deadline = time.time() + 900
    while (counts := states()).get("deferred", 0) < n:
        if time.time() > deadline:
            raise RuntimeError(f"{dag_id}: not all {n} tasks deferred after 900 s: {counts}")
        time.sleep(2)
    all_deferred = time.time() - started
    print(f"[bench] {dag_id}: {n} deferred after {all_deferred:.0f} s", flush=True)
    time.sleep(2 * interval)  # the triggerer picks them up and its poller settles
    samples = []
    cpu0, t0 = tree_cpu(triggerer), time.time()
    while time.time() - t0 < seconds:
        samples.append(states())
        time.sleep(2)
    t1 = time.time()
    cpu = tree_cpu(triggerer) - cpu0
    ids = [
        i for page in client.get_paginator("list_builds_for_project").paginate(projectName=PROJECT) for i in page["ids"]
    ]
    in_progress = [
        b["id"]
        for i in range(0, len(ids), 100)
        for b in client.batch_get_builds(ids=ids[i : i + 100])["builds"]
        if b["buildStatus"] == "IN_PROGRESS"
    ]
    row = {
        "n": n,
        "all_deferred_after": all_deferred,
        "samples": len(samples),
        "max_running": max(s.get("running", 0) + s.get("queued", 0) for s in samples),
        "min_deferred": min(s.get("deferred", 0) for s in samples),
        "cpu_per_minute": cpu / (t1 - t0) * 60,
        "idle_cpu_per_minute": idle,
        "window": t1 - t0,
        "builds_waiting": len(in_progress),
        **polling_figures(calls.between(t0, t1, "BatchGetBuilds"), t1 - t0, interval),
    }
    if not last:
        # End this size's builds so the next size waits alone (its tasks then fail, as they should).
        for build_id in in_progress:
            client.stop_build(id=build_id)
        finish = time.time() + 900
        while api.get_run(dag_id, run_id)["state"] not in ("success", "failed") and time.time() < finish:
            time.sleep(3)
    return row


def print_airflow_table(rows: list[dict], interval: float) -> None:
    print()
    print(
        f"Real Airflow: N mapped CodeBuildOperator tasks, LocalExecutor with 16 slots (poll interval {interval:g} s, "
        f"window {rows[0]['window']:.0f} s)"
    )
    header = (
        "N",
        "all deferred after",
        "running+queued (max)",
        "deferred (min)",
        "builds waiting",
        "sandbox calls/round",
        "max ids/call",
        "triggerer CPU s/min",
        "idle triggerer CPU s/min",
    )
    lines = [
        [
            str(r["n"]),
            f"{r['all_deferred_after']:.0f} s",
            str(r["max_running"]),
            str(r["min_deferred"]),
            str(r["builds_waiting"]),
            f"{r['sandbox_calls_per_round']:.2f} ({r['sandbox_calls']} in {r['sandbox_rounds']})",
            str(r["max_ids_per_call"]),
            f"{r['cpu_per_minute']:.2f}",
            f"{r['idle_cpu_per_minute']:.2f}",
        ]
        for r in rows
    ]
    print_table(header, lines)


# --- main ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,50,200", help="numbers of waiting builds (default 1,50,200)")
    parser.add_argument("--seconds", type=float, default=60, help="measurement window per size (default 60)")
    parser.add_argument("--interval", type=float, default=5, help="poll interval of the triggers (default 5)")
    parser.add_argument("--airflow", action="store_true", help="also measure in real Airflow processes")
    parser.add_argument("--airflow-sizes", default="1,50", help="sizes for --airflow (default 1,50)")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--waiter", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.waiter:
        waiter_main(json.loads(args.waiter))
        return 0

    sandbox, client, calls = setup_sandbox()
    figures: dict = {"triggers": []}
    try:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            print(f"[bench] {n} waiting builds, {args.seconds:g} s ...", flush=True)
            figures["triggers"].append(measure_triggers(sandbox.url, client, calls, n, args.seconds, args.interval))
        print_triggers_table(figures["triggers"])
        if args.airflow:
            sizes = [int(s) for s in args.airflow_sizes.split(",") if s]
            _, figures["airflow"] = measure_airflow(sandbox.url, client, calls, sizes, args.seconds, args.interval)
            print_airflow_table(figures["airflow"], args.interval)
    finally:
        sandbox.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
