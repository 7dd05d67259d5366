"""`make demo`: the example release, end to end, on the local sandbox.

Starts the sandbox AWS and Airflow, starts `webapp-release` with a signed GitHub push delivered to
the webhook endpoint (as GitHub would), approves the pending approval as the QA lead (REST API, with a note), waits for the
end, then prints the stages and actions with status and duration, and the SNS messages the pipeline
published (read back from the SQS queue subscribed to the topic). Exit code 0 only on success.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3

from include.localenv.airflow_api import AirflowAPI, AirflowAPIError
from include.localenv.environment import LocalEnvironment
from include.localenv.webhook_client import push_commit, send_github_push
from include.sandbox import resources
from release_orchestrator.settings import pipelines_dirs

PIPELINE = "webapp-release"
APPROVAL_TASK = "Approval.QALeadSignOff"
REVIEWER = "qa-lead"
RUN_TIMEOUT = 15 * 60
TERMINAL = {"success", "failed"}


REPOSITORY = "acme/webapp"
WEBHOOK_SECRET = "local-demo-webhook-secret"


def push_to_main(env: LocalEnvironment, api: AirflowAPI) -> str:
    """Deliver a signed GitHub push of a new commit on main; return the run it started."""
    # The receiver looks the repository's secret up in an Airflow Variable (never in a spec).
    name = "release_webhook_secret__" + REPOSITORY.replace("/", "__")
    try:
        api.request("POST", "/variables", json={"key": name, "value": WEBHOOK_SECRET})
    except AirflowAPIError:
        api.request("PATCH", f"/variables/{name}", json={"key": name, "value": WEBHOOK_SECRET})
    # A developer's push: the commit lands on the sandbox's GitHub (the source action fetches its files
    # from there), then GitHub's webhook tells the receiver.
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    pushed = push_commit(
        env.sandbox_url,
        REPOSITORY,
        "main",
        {"web/orders.py": f"# orders page, {stamp}\n", "web/templates/orders.html": "<h1>Orders</h1>\n"},
        "Add the orders page",
    )
    commit = pushed["sha"]
    response = send_github_push(
        f"{env.airflow_url}/release-webhooks/github",
        WEBHOOK_SECRET,
        REPOSITORY,
        "main",
        commit,
        pushed["files"],
        message=pushed["message"],
    )
    body = response.json()
    started = [s for s in body.get("started", []) if s["dag_id"] == PIPELINE]
    if response.status_code != 200 or not started:
        raise RuntimeError(f"the push webhook started no {PIPELINE} run: HTTP {response.status_code} {body}")
    log(f"GitHub push of {commit[:12]} to {REPOSITORY}@main -> webhook started {PIPELINE} run {started[0]['run_id']}")
    return started[0]["run_id"]


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def follow_run(env: LocalEnvironment, api: AirflowAPI, reviewer: AirflowAPI, run_id: str) -> tuple[str, list[dict]]:
    """Print a line per state change; approve when the approval waits. Returns the final state and TIs."""
    seen: dict[str, str | None] = {}
    approved = False
    api.wait_for_run_created(PIPELINE, run_id)
    deadline = time.monotonic() + RUN_TIMEOUT
    run_state = "queued"
    while time.monotonic() < deadline:
        env.check_alive()
        run = api.get_run(PIPELINE, run_id)
        tis = api.task_instances(PIPELINE, run_id)
        for ti in sorted(tis, key=lambda t: t.get("start_date") or "~"):
            state = ti["state"]
            if seen.get(ti["task_id"], "unset") != state:
                if state is not None:
                    log(f"{ti['task_id']:<28} {seen.get(ti['task_id']) or 'none':>10} -> {state}")
                seen[ti["task_id"]] = state
            if ti["task_id"] == APPROVAL_TASK and state == "deferred" and not approved:
                time.sleep(1)  # let a person read the approval message first
                reviewer.set_task_state(
                    PIPELINE,
                    run_id,
                    APPROVAL_TASK,
                    "success",
                    note=f"Approved by {REVIEWER}: staging checked, integration tests green.",
                )
                log(f"{APPROVAL_TASK:<28} approved by {REVIEWER} through the REST API")
                approved = True
        if run["state"] != run_state:
            log(f"pipeline run {run_id}: {run_state} -> {run['state']}")
            run_state = run["state"]
        if run_state in TERMINAL:
            return run_state, api.task_instances(PIPELINE, run_id)
        time.sleep(1)
    raise TimeoutError(f"the run did not finish within {RUN_TIMEOUT}s")


def run_seconds(run: dict) -> float:
    """Seconds from the run's creation (queued) to its end."""
    started = datetime.fromisoformat(run["queued_at"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
    return (ended - started).total_seconds()


def duration(ti: dict) -> str:
    if ti.get("duration") is not None:
        return f"{ti['duration']:.1f}s"
    return "-"


def print_table(tis: list[dict]) -> None:
    print()
    print(f"{'stage':<10} {'action':<18} {'status':<16} {'duration':>9}  note")
    print("-" * 80)
    stage_order = ["Source", "Build", "Test", "Approval", "Deploy"]
    for ti in sorted(
        tis,
        key=lambda t: (
            stage_order.index(t["task_id"].split(".")[0]) if t["task_id"].split(".")[0] in stage_order else 99,
            t.get("start_date") or "~",
            t["task_id"],
        ),
    ):
        stage, _, action = ti["task_id"].partition(".")
        print(f"{stage:<10} {action:<18} {str(ti['state']):<16} {duration(ti):>9}  {ti.get('note') or ''}")
    print()


def print_artifacts(api: AirflowAPI, run_id: str, tis: list[dict]) -> None:
    """Which artifact each action wrote and read (its XCom `artifacts`): the release's path from the commit
    to every deployment."""
    print("Artifacts (s3 objects in the artifact store):")
    for ti in sorted(tis, key=lambda t: t.get("start_date") or "~"):
        try:
            used = api.xcom(PIPELINE, run_id, ti["task_id"], key="artifacts")
        except AirflowAPIError:
            continue  # this action passes no artifacts
        if isinstance(used, str):
            used = json.loads(used)
        for name, uri in (used.get("outputs") or {}).items():
            print(f"  {ti['task_id']:<24} wrote {name:<12} {uri}")
        for name, uri in (used.get("inputs") or {}).items():
            print(f"  {ti['task_id']:<24} read  {name:<12} {uri}")
    print()


def read_notifications(env: LocalEnvironment, until_subject: tuple[str, ...] = (), timeout: float = 45) -> list[dict]:
    """Messages on the inbox queue; with until_subject, keep reading until one such subject arrives.

    The pipeline's own success/failure message comes from a DAG callback that the dag-processor runs
    shortly after the run ends, so it may arrive a few seconds after the run's final state.
    """
    sqs = boto3.client(
        "sqs",
        endpoint_url=env.sandbox_url,
        region_name=resources.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    queue_url = sqs.get_queue_url(QueueName=resources.INBOX_QUEUE)["QueueUrl"]
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in batch:
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        done = not until_subject or any(m.get("Subject", "").startswith(until_subject) for m in received)
        if (done and not batch) or time.monotonic() > deadline:
            return received


def print_notifications(notes: list[dict]) -> None:
    print(f"SNS messages published to {resources.SNS_TOPIC} ({len(notes)}):")
    for envelope in notes:
        print(f"  - {envelope.get('Subject')}")
        try:
            body = json.loads(envelope.get("Message", "{}"))
        except ValueError:
            continue
        if "approval" in body:
            print(f"      review link: {body['approval'].get('approvalReviewLink')}")
        detail = body.get("detail") or {}
        for key in ("failed-stage", "failed-action", "error-summary", "aws-console-link"):
            if detail.get(key):
                print(f"      {key}: {detail[key]}")
    print()


def main() -> int:
    # The example's specs, and those of $RELEASE_ORCHESTRATOR_PIPELINES_DIR when set.
    example = str(Path(__file__).resolve().parents[1] / "pipelines")
    env = LocalEnvironment(pipelines_dir=os.pathsep.join(dict.fromkeys([example, *pipelines_dirs()])))
    with env:
        api = AirflowAPI(env.airflow_url, "admin", env.users["admin"])
        reviewer = AirflowAPI(env.airflow_url, REVIEWER, env.users[REVIEWER])
        log(f"waiting for the dag-processor to load {PIPELINE}")
        api.wait_for_dag(PIPELINE)
        read_notifications(env)  # start from an empty inbox
        run_id = push_to_main(env, api)
        state, tis = follow_run(env, api, reviewer, run_id)
        print_table(tis)
        print_artifacts(api, run_id, tis)
        log("collecting the SNS messages the pipeline published")
        print_notifications(read_notifications(env, until_subject=("SUCCEEDED: pipeline", "FAILED: pipeline")))
        run = api.get_run(PIPELINE, run_id)
        print(
            f"Run {run_id}: {state.upper()} in {run_seconds(run):.1f} s from creation to end  "
            f"(Airflow UI: {env.airflow_url}, login admin/admin while `make up` runs)"
        )
        return 0 if state == "success" else 1
