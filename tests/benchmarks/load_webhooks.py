"""Load on the webhook endpoint: signed GitHub pushes at a fixed rate against a real api-server on loopback.

    .venv/bin/python tests/benchmarks/load_webhooks.py                       # 200 req/s for 10 s, own environment
    .venv/bin/python tests/benchmarks/load_webhooks.py --rate 50 --duration 20
    .venv/bin/python tests/benchmarks/load_webhooks.py --url http://127.0.0.1:8080 --secret S \\
        --repository acme/webapp --expect webapp-release          # a running `make up` (starts real releases!)

A benchmark script, not a test (pytest does not collect it). Without --url it starts, on free loopback ports and
in a temporary AIRFLOW_HOME, the api-server (one worker, as `make up`) and the dag-processor, with three
benchmark pipelines watching `bench/app` (generated in a temporary spec directory): `bench-main` (pushes to
main), `bench-src` (pushes to main touching src/**) and `bench-release` (release/* only, so never matched).
The scheduler is not started, so the thousands of runs a load test creates stay queued instead of competing
with the api-server for the two cores; the receiver creates runs itself, so nothing it does is skipped.
Every delivery is a push to main changing src/app.py: it must start bench-main and bench-src once each.

Arrivals are open-loop: request i is sent at start + i / rate whether or not earlier ones were answered (at
most --max-in-flight at once), so a slow server shows as latency, not as a lower offered rate. Afterwards the
runs are read through the REST API and matched to the deliveries by run id (`webhook__<delivery id>__...`).

Reported: offered and achieved request rates, endpoint latency percentiles (request sent to response read),
response time from the moment each request was due, request-to-run-created percentiles (the run's
queued_at minus the moment its request was due; same clock, same machine), status counts, and whether every delivery started exactly one run of each matching pipeline and
none of the other. Only loopback targets are accepted; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "plugins")]

REPOSITORY = "bench/app"
SECRET = "bench-webhook-secret"
MATCHING = ("bench-main", "bench-src")
NOT_MATCHING = ("bench-release",)
MAX_REQUESTS = 20_000
MAX_DURATION = 120.0
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"

SPECS = {
    "bench-main": {"push": {"branches": {"includes": ["main"]}}},
    "bench-src": {"push": {"branches": {"includes": ["main"]}, "file_paths": {"includes": ["src/**"]}}},
    "bench-release": {"push": {"branches": {"includes": ["release/*"]}}},
}


def spec_yaml(name: str, trigger: dict) -> str:
    return json.dumps(
        {
            "pipeline": {
                "name": name,
                "execution_mode": "PARALLEL",
                "tags": ["benchmark"],
                "triggers": [{"provider": "github", "repository": REPOSITORY, **trigger}],
                "stages": [
                    {
                        "name": "Source",
                        "actions": [
                            {
                                "name": "Checkout",
                                "type": "source.github",
                                "namespace": "Source",
                                "configuration": {"repository": REPOSITORY, "branch": "main"},
                            }
                        ],
                    }
                ],
            }
        },
        indent=2,
    )  # JSON is YAML


# --- the environment ----------------------------------------------------------------------------------------


def start_environment(
    home: Path,
    specs: Path,
    extra_specs: list[str],
    log_level: str,
    database_url: str | None = None,
    workers: int = 1,
    starter: str = "separate",
    starters: int = 1,
):
    from include.localenv.environment import LocalEnvironment, free_port
    from release_orchestrator.webhooks.signatures import secret_variable

    class ApiOnly(LocalEnvironment):
        """The api-server, the dag-processor and (WEBHOOK_STARTER=separate) the webhook starter, at nice 10 as
        the production setting in docker-compose.yaml; no sandbox, scheduler or triggerer."""

        def start(self) -> None:
            self.check_ports()
            self.home.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            (self.home / "passwords.json").write_text(json.dumps(self.users))
            self._say("migrating the Airflow metadata DB")
            self._run_airflow(["db", "migrate"], timeout=600)
            self._say(f"starting the api-server on {self.airflow_url} ({workers} worker(s)) and the dag-processor")
            self._spawn(
                "api-server",
                [
                    sys.executable,
                    "-m",
                    "airflow",
                    "api-server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.airflow_port),
                    "--workers",
                    str(workers),
                ],
                env=self.airflow_env(),
            )
            self._spawn("dag-processor", [sys.executable, "-m", "airflow", "dag-processor"], env=self.airflow_env())
            for n in range(1, starters + 1) if starter == "separate" else ():
                self._spawn(
                    "webhook-starter" + (f"-{n}" if n > 1 else ""),
                    [sys.executable, "-m", "release_orchestrator.webhooks.starter", "--nice", "10"],
                    env=self.airflow_env(),
                )
            self._wait_http(f"{self.airflow_url}/api/v2/monitor/health", "api-server", timeout=180)

    for name, trigger in SPECS.items():
        (specs / f"{name}.yaml").write_text(spec_yaml(name, trigger))
    env = ApiOnly(
        home=home,
        airflow_port=free_port(),
        sandbox_port=free_port(),
        pipelines_dir=os.pathsep.join([str(specs), *extra_specs]),
        database_url=database_url,
        extra_env={
            f"AIRFLOW_VAR_{secret_variable(REPOSITORY).upper()}": SECRET,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": log_level,
            "AIRFLOW__API__WORKERS": str(workers),
            "RELEASE_ORCHESTRATOR_WEBHOOK_STARTER": starter,
        },
    )
    env.start()
    return env


# --- the load -----------------------------------------------------------------------------------------------


def push_body(commit: str) -> bytes:
    head = {
        "id": commit,
        "message": "bench",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "url": f"https://github.com/{REPOSITORY}/commit/{commit}",
        "author": {"name": "Bench", "email": "bench@example.com", "username": "bench"},
        "added": [],
        "removed": [],
        "modified": ["src/app.py"],
    }
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": commit,
            "created": False,
            "deleted": False,
            "forced": False,
            "repository": {"full_name": REPOSITORY, "html_url": f"https://github.com/{REPOSITORY}"},
            "pusher": {"name": "bench"},
            "commits": [head],
            "head_commit": head,
        }
    ).encode()


async def load(
    url: str, secret: str, rate: float, duration: float, max_in_flight: int, timeout: float, make_body=push_body
) -> list[dict]:
    """Send the deliveries open-loop; aiohttp, since httpx's client used a whole core at 200 req/s and became
    the bottleneck it was meant to measure."""
    import aiohttp

    total = min(int(rate * duration), MAX_REQUESTS)
    results: list[dict] = []
    # Prepared up front, so signing and encoding do not slow the arrivals down.
    prepared = []
    for _ in range(total):
        body = make_body(uuid.uuid4().hex + uuid.uuid4().hex[:8])
        prepared.append(
            (str(uuid.uuid4()), body, "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest())
        )
    gate = asyncio.Semaphore(max_in_flight)
    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=max_in_flight)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as client:
        start = time.perf_counter() + 0.5
        epoch_at_start = time.time() + (start - time.perf_counter())

        async def one(i: int, delivery: str, body: bytes, signature: str) -> None:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            async with gate:
                sent = time.perf_counter()
                record = {
                    "delivery": delivery,
                    "scheduled": start + i / rate,
                    "sent": sent,
                    "arrival_epoch": epoch_at_start + i / rate,
                }
                try:
                    async with client.post(
                        url,
                        data=body,
                        headers={
                            "Content-Type": "application/json",
                            "X-GitHub-Event": "push",
                            "X-GitHub-Delivery": delivery,
                            "X-Hub-Signature-256": signature,
                            "User-Agent": "GitHub-Hookshot/bench",
                        },
                    ) as response:
                        content = await response.read()
                        record.update(status=response.status, done=time.perf_counter())
                        if response.status == 200:
                            record["started"] = sorted(s["dag_id"] for s in json.loads(content).get("started", []))
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    record.update(status=type(err).__name__, done=time.perf_counter())
                results.append(record)

        await asyncio.wait_for(
            asyncio.gather(*(one(i, *p) for i, p in enumerate(prepared))), timeout=duration + timeout + 30
        )
    return results


def read_runs(base: str, user: str, password: str, dag_ids: tuple[str, ...]) -> dict[str, list[dict]]:
    with httpx.Client(base_url=base, timeout=60) as http:
        token = http.post("/auth/token", json={"username": user, "password": password}).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        out: dict[str, list[dict]] = {}
        for dag_id in dag_ids:
            runs: list[dict] = []
            for _ in range(MAX_REQUESTS // 100 + 2):  # bounded paging
                page = http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "offset": len(runs)})
                page.raise_for_status()
                batch = page.json()["dag_runs"]
                runs += batch
                if len(batch) < 100:
                    break
            out[dag_id] = runs
    return out


def wait_for_runs(
    base: str,
    user: str,
    password: str,
    results: list[dict],
    matching: tuple[str, ...],
    not_matching: tuple[str, ...],
    timeout: float,
) -> dict[str, list[dict]]:
    """The runs, once every accepted delivery's runs exist (the receiver creates them just after answering)."""
    ours = {r["delivery"] for r in results if r["status"] == 200}
    expected = len(ours) * len(matching)
    deadline = time.monotonic() + timeout
    while True:
        runs = read_runs(base, user, password, (*matching, *not_matching))
        created = sum(
            1
            for dag_id in matching
            for run in runs[dag_id]
            if run["dag_run_id"].startswith("webhook__") and run["dag_run_id"].split("__")[1] in ours
        )
        if created >= expected or time.monotonic() > deadline:
            return runs
        print(f"  {created}/{expected} runs created; waiting", file=sys.stderr)
        time.sleep(2)


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group (Linux /proc)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --- the report ---------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)  # nearest rank
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def report(
    results: list[dict],
    runs: dict[str, list[dict]],
    rate: float,
    duration: float,
    matching: tuple[str, ...],
    not_matching: tuple[str, ...],
) -> dict:
    ok = [r for r in results if r["status"] == 200]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    latencies = [(r["done"] - r["sent"]) * 1000 for r in ok]
    from_arrival = [(r["done"] - r["scheduled"]) * 1000 for r in ok]
    lateness = [(r["sent"] - r["scheduled"]) * 1000 for r in results]
    first, last = min(r["sent"] for r in results), max(r["done"] for r in results)
    by_delivery = {r["delivery"]: r for r in results}
    per_delivery: dict[str, dict[str, int]] = {d: {} for d in by_delivery}
    to_run_ms: list[float] = []
    for dag_id, dag_runs in runs.items():
        for run in dag_runs:
            run_id = run["dag_run_id"]
            if not run_id.startswith("webhook__"):
                continue
            delivery = run_id.split("__")[1]
            if delivery not in by_delivery:
                continue  # an earlier benchmark's
            per_delivery[delivery][dag_id] = per_delivery[delivery].get(dag_id, 0) + 1
            created = datetime.fromisoformat(run["queued_at"].replace("Z", "+00:00")).timestamp()
            to_run_ms.append((created - by_delivery[delivery]["arrival_epoch"]) * 1000)
    expected = {dag_id: 1 for dag_id in matching}
    wrong = {
        d: counts
        for d, counts in per_delivery.items()
        if by_delivery[d]["status"] == 200 and {k: v for k, v in counts.items() if v} != expected
    }
    answered_wrong = [d for d, r in by_delivery.items() if r["status"] == 200 and r.get("started") != sorted(matching)]
    unanswered_but_started = {d: c for d, c in per_delivery.items() if by_delivery[d]["status"] != 200 and c}
    summary = {
        "offered": {"rate_per_s": rate, "duration_s": duration, "requests": len(results)},
        "achieved_rate_per_s": round(len(results) / (last - first), 1),
        "ok_rate_per_s": round(len(ok) / (last - first), 1),
        "statuses": statuses,
        "endpoint_latency_ms": {
            "p50": round(pct(latencies, 50), 1),
            "p95": round(pct(latencies, 95), 1),
            "p99": round(pct(latencies, 99), 1),
            "max": round(max(latencies, default=0), 1),
            "mean": round(statistics.fmean(latencies), 1) if latencies else None,
        },
        # Open loop: from the moment a request was due (includes waiting for one of --max-in-flight slots).
        "response_time_from_arrival_ms": {
            "p50": round(pct(from_arrival, 50), 1),
            "p95": round(pct(from_arrival, 95), 1),
        },
        "send_lateness_ms": {"p50": round(pct(lateness, 50), 1), "p95": round(pct(lateness, 95), 1)},
        "request_to_run_created_ms": {
            "p50": round(pct(to_run_ms, 50), 1),
            "p95": round(pct(to_run_ms, 95), 1),
            "max": round(max(to_run_ms, default=0), 1),
            "runs": len(to_run_ms),
        },
        "exactly_one_run_per_matching_pipeline": not wrong and not answered_wrong,
        "deliveries_with_wrong_runs_count": len(wrong),
        "expected_runs": len(ok) * len(matching),
        "deliveries_with_wrong_runs": dict(list(wrong.items())[:5]),
        "deliveries_answered_with_other_pipelines": answered_wrong[:5],
        "failed_deliveries_that_started_runs": dict(list(unanswered_but_started.items())[:5]),
        "non_matching_pipeline_runs": sum(c.get(d, 0) for c in per_delivery.values() for d in not_matching),
    }
    return summary


def git_commit() -> str:
    """The commit measured, with "+changes" when the work tree differs from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def verdict(summary: dict) -> str:
    """Whether the offered rate was sustained: a rate not achieved is never reported as one."""
    offered, achieved = summary["offered"]["rate_per_s"], summary["achieved_rate_per_s"]
    problems = []
    if achieved < 0.995 * offered:
        problems.append(f"achieved {achieved} of {offered} req/s offered")
    if summary["ok_rate_per_s"] < achieved:
        problems.append(f"not every response was 200: {summary['statuses']}")
    if summary.get("load_generator_cores_busy", 0) > 0.8:
        problems.append("the load generator was near a full core: it may be what limited the rate")
    if not summary["exactly_one_run_per_matching_pipeline"]:
        problems.append("not every delivery started exactly one run of each matching pipeline")
    return "sustained" if not problems else "NOT sustained: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    global REPOSITORY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load (default 10, at most 120)")
    parser.add_argument("--max-in-flight", type=int, default=256, help="concurrent requests at most (default 256)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    parser.add_argument("--warmup", type=int, default=20, help="deliveries sent one by one first (not measured)")
    parser.add_argument("--url", help="base URL of a running api-server on loopback, e.g. http://127.0.0.1:8080")
    parser.add_argument("--secret", default=SECRET, help="the repository's webhook secret (with --url)")
    parser.add_argument("--repository", default=REPOSITORY, help="repository the pushes are for (with --url)")
    parser.add_argument("--expect", default=",".join(MATCHING), help="DAGs each push must start (with --url)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait, after the load, for every accepted delivery's runs (default 300)",
    )
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument(
        "--extra-specs",
        action="append",
        default=[],
        help="more spec directories for the own environment (the receiver matches every "
        "pipeline against every delivery), e.g. include/pipelines",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="the own api-server's log level (INFO as `make up`; WARNING skips the access log)",
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_POSTGRES,
        metavar="SERVER_URL",
        help="the own environment's metadata DB on PostgreSQL (a scratch database on this server, "
        f"dropped afterwards; default {DEFAULT_POSTGRES}) instead of SQLite",
    )
    parser.add_argument("--workers", type=int, default=1, help="the own api-server's worker processes (default 1)")
    parser.add_argument(
        "--starter",
        choices=("separate", "api-server"),
        default="separate",
        help="where the own environment creates the runs (the WEBHOOK_STARTER setting): a starter process of "
        "its own at nice 10, as docker-compose.yaml does (default), or a thread in the api-server",
    )
    parser.add_argument(
        "--starters",
        type=int,
        default=1,
        help="how many separate starter processes (default 1; as `--scale airflow-webhook-starter=N`)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the own environment's home in place")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args(argv)
    if not 0 < args.rate * args.duration <= MAX_REQUESTS or not 0 < args.duration <= MAX_DURATION:
        parser.error(f"at most {MAX_REQUESTS} requests and {MAX_DURATION:.0f} s")
    REPOSITORY = args.repository

    env = database_url = None
    home = Path(tempfile.mkdtemp(prefix="load-webhooks-"))
    try:
        if args.url:
            if urlsplit(args.url).hostname not in LOOPBACK:
                parser.error("only an api-server on loopback (127.0.0.1, localhost, ::1) may be loaded")
            base, secret, user, password = args.url.rstrip("/"), args.secret, args.user, args.password
            matching = tuple(d for d in args.expect.split(",") if d)
            not_matching: tuple[str, ...] = ()
        else:
            specs = home / "specs"
            specs.mkdir()
            if args.postgres:
                from include.localenv import postgres

                database_url = postgres.create_scratch_database(args.postgres, "load_webhooks")
            env = start_environment(
                home / "airflow",
                specs,
                [str(Path(p).resolve()) for p in args.extra_specs],
                args.log_level,
                database_url,
                args.workers,
                args.starter,
                args.starters,
            )
            base, secret, user, password = env.airflow_url, SECRET, "admin", env.users["admin"]
            matching, not_matching = MATCHING, NOT_MATCHING
            from include.localenv.airflow_api import AirflowAPI

            api = AirflowAPI(base, user, password)
            for dag_id in (*matching, *not_matching):
                api.wait_for_dag(dag_id, timeout=240)
        url = f"{base}/release-webhooks/github"
        for _ in range(args.warmup):  # first requests load modules, specs, DAGs
            asyncio.run(load(url, secret, rate=1000, duration=0.001, max_in_flight=1, timeout=args.timeout))
        # The own environment's processes whose CPU is reported (each runs in a process group of its own).
        measured = {name: p.pid for name, p in (env._procs if env else {}).items() if name != "dag-processor"}
        cpu_before = {name: group_cpu_seconds(pid) for name, pid in measured.items()}
        load_before, client_cpu_before = os.getloadavg()[0], time.process_time()
        results = asyncio.run(load(url, secret, args.rate, args.duration, args.max_in_flight, args.timeout))
        load_wall = max(r["done"] for r in results) - min(r["sent"] for r in results)
        client_cores = (time.process_time() - client_cpu_before) / load_wall
        cpu_answering = {name: group_cpu_seconds(pid) - cpu_before[name] for name, pid in measured.items()}
        runs = wait_for_runs(base, user, password, results, matching, not_matching, args.drain_timeout)
        # Until every run exists: the CPU of answering and of creating the runs.
        cpu_total = {name: group_cpu_seconds(pid) - cpu_before[name] for name, pid in measured.items()}
        summary = report(results, runs, args.rate, args.duration, matching, not_matching)
        summary = {"commit": git_commit(), "cores": os.cpu_count(), **summary}
        summary["load_generator_cores_busy"] = round(client_cores, 2)
        if env is not None:
            summary["environment"] = {
                "metadata_db": "postgresql" if database_url else "sqlite",
                "api_server_workers": args.workers,
                "webhook_starter": args.starter + (f" x{args.starters}" if args.starter == "separate" else ""),
            }
        summary["load_average_1m_before_after"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        # Cores busy while the load ran, and CPU per delivery from its start until every run existed.
        summary["cpu"] = {
            name: {
                "cores_busy_during_load": round(cpu_answering[name] / load_wall, 2),
                "ms_per_delivery": round(cpu_total[name] * 1000 / max(1, len(results)), 1),
            }
            for name in measured
        }
        summary["verdict"] = verdict(summary)
        if args.json:
            print(json.dumps(summary))
        else:
            print(json.dumps(summary, indent=2))
        return 0 if summary["exactly_one_run_per_matching_pipeline"] else 1
    finally:
        if env is not None:
            env.stop()
        if database_url:
            postgres.drop_database(database_url, args.postgres)
        if not args.keep:
            import shutil

            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"kept {home}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
