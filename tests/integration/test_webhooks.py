"""The webhook receiver over real HTTP, served by the real api-server from plugins/.

Pipelines: tests/integration/pipelines/webhook-*.yaml.

The secret for acme/hooks is an Airflow Variable set through the REST API, as an operator would set it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from include.localenv.airflow_api import AirflowAPIError
from include.localenv.webhook_client import github_push_payload, send_github, send_github_push, sign
from release_orchestrator.webhooks.runs import body_digest
from release_orchestrator.webhooks.signatures import secret_connection, secret_variable
from tests.integration.helpers import wait_for_run

pytestmark = pytest.mark.integration

REPO = "acme/hooks"
SECRET = "integration-webhook-secret"
DAGS = ("webhook-main", "webhook-docs", "webhook-tags", "webhook-pr")
LIMIT = 25 * 1024 * 1024


def set_variable(api, key: str, value: str) -> None:
    try:
        api.request("POST", "/variables", json={"key": key, "value": value})
    except AirflowAPIError as err:
        if "HTTP 409" not in str(err):
            raise
        api.request("PATCH", f"/variables/{key}", json={"key": key, "value": value})


@pytest.fixture(scope="module")
def url(airflow_env, api) -> str:
    set_variable(api, secret_variable(REPO), SECRET)
    for dag_id in DAGS:
        api.wait_for_dag(dag_id, timeout=240)
    return f"{airflow_env.airflow_url}/release-webhooks"


def commit() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


def run_ids(api) -> set[tuple[str, str]]:
    """Every (dag_id, run_id) of the webhook test pipelines."""
    found = set()
    for dag_id in DAGS:
        runs = api.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1000})["dag_runs"]
        found |= {(dag_id, run["dag_run_id"]) for run in runs}
    return found


def push(url: str, branch: str = "main", files=("src/app.py",), **kwargs) -> httpx.Response:
    return send_github_push(f"{url}/github", SECRET, REPO, branch, commit(), list(files), **kwargs)


def started(response: httpx.Response, api=None) -> dict[str, str]:
    """The runs a delivery started; with `api`, once they exist (they are created just after the answer)."""
    assert response.status_code == 200, response.text
    runs = {s["dag_id"]: s["run_id"] for s in response.json()["started"]}
    for dag_id, run_id in runs.items() if api else ():
        api.wait_for_run_created(dag_id, run_id)
    return runs


def not_started(response: httpx.Response) -> dict[str, str]:
    return {s["dag_id"]: s["reason"] for s in response.json()["not_started"]}


def test_plugin_is_served_by_the_api_server(url, api):
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    plugins = api.request("GET", "/plugins")["plugins"]
    assert "release_orchestrator" in [p["name"] for p in plugins]


def test_signed_push_starts_a_run_with_the_source_in_its_conf(url, api):
    sha, delivery = commit(), str(uuid.uuid4())
    response = send_github_push(
        f"{url}/github", SECRET, REPO, "main", sha, ["src/app.py", "README.md"], delivery_id=delivery
    )
    runs = started(response, api)
    assert list(runs) == ["webhook-main"]  # webhook-docs wants docs/**
    assert runs["webhook-main"].startswith(f"webhook__{delivery}__")
    assert "triggers[0].push.file_paths" in not_started(response)["webhook-docs"]

    run = api.get_run("webhook-main", runs["webhook-main"])
    source = run["conf"]["source"]
    assert source["provider"] == "github" and source["repository"] == REPO and source["branch"] == "main"
    assert source["tag"] is None
    assert source["commit_id"] == sha
    assert source["changed_files"] == ["src/app.py", "README.md"]
    assert source["event"] == "push" and source["delivery_id"] == delivery
    assert source["commit_url"] == f"https://github.com/{REPO}/commit/{sha}"
    assert run["note"].startswith("Started by github webhook: acme/hooks push to main")

    # The source action releases exactly that commit.
    assert wait_for_run(api, "webhook-main", runs["webhook-main"], timeout=180)["state"] == "success"
    outputs = api.xcom("webhook-main", runs["webhook-main"], "Source.Checkout")
    assert outputs["CommitId"] == sha
    assert outputs["ChangedFiles"] == ["src/app.py", "README.md"]


def test_one_push_starts_every_matching_pipeline_once(url, api):
    before = run_ids(api)
    response = push(url, files=["docs/guide.md", "src/app.py"])
    runs = started(response, api)
    assert sorted(runs) == ["webhook-docs", "webhook-main"]
    assert run_ids(api) - before == set(runs.items())


@pytest.mark.parametrize(
    "signature",
    [
        None,  # missing
        "sha256=" + "0" * 64,  # wrong
        "sha1=" + "0" * 40,  # wrongly encoded
        "sha256=ZZ" + "0" * 62,
    ],
)
def test_bad_signatures_are_refused_and_start_nothing(url, api, signature):
    body = json.dumps(github_push_payload(REPO, "main", commit(), ["src/app.py"])).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()), "Content-Type": "application/json"}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    before = run_ids(api)
    response = httpx.post(f"{url}/github", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert run_ids(api) == before


def test_signed_with_the_wrong_secret_is_refused(url, api):
    before = run_ids(api)
    response = send_github_push(f"{url}/github", "not-the-secret", REPO, "main", commit(), ["src/app.py"])
    assert response.status_code == 401
    assert response.json()["error"] == "X-Hub-Signature-256 does not match"
    assert run_ids(api) == before


def test_replayed_delivery_starts_nothing_new(url, api, airflow_env):
    payload = github_push_payload(REPO, "main", commit(), ["src/app.py"])
    delivery = str(uuid.uuid4())
    first = started(send_github(f"{url}/github", SECRET, "push", payload, delivery_id=delivery), api)
    before = run_ids(api)

    again = send_github(f"{url}/github", SECRET, "push", payload, delivery_id=delivery)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["runs"] == [{"dag_id": d, "run_id": r} for d, r in sorted(first.items())]
    # The same signed body under another delivery id is a replay as well.
    resent = send_github(f"{url}/github", SECRET, "push", payload, delivery_id=str(uuid.uuid4()))
    assert resent.json()["duplicate"] is True
    assert run_ids(api) == before

    # Seen deliveries live in the metadata DB only: a new process (as after an api-server restart) finds them.
    check = (
        "from release_orchestrator.webhooks.deliveries import DeliveryStore; import json, sys; "
        "print(json.dumps(DeliveryStore().record(sys.argv[1], sys.argv[2], 'github', []).runs))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check, delivery, body_digest(json.dumps(payload).encode())],
        env=airflow_env.airflow_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == again.json()["runs"]


def test_a_recorded_delivery_is_started_by_the_api_servers_starter(url, api, airflow_env):
    """As when the api-server stopped between its answer and the runs: a delivery recorded in the metadata DB
    by another process, which wakes no one, is started by the api-server's starter on its next round."""
    from release_orchestrator.webhooks import payloads

    sha, delivery = commit(), str(uuid.uuid4())
    data = github_push_payload(REPO, "main", sha, ["src/app.py"])
    source = payloads.parse_events("github", payloads.event_kind("github", "push", data), "push", data, delivery)[
        0
    ].source
    run_id = f"webhook__{delivery}__{body_digest(json.dumps(data).encode())}"
    starts = [
        {
            "dag_id": "webhook-main",
            "run_id": run_id,
            "conf": {"source": source},
            "note": "recorded elsewhere",
            "user": "github-webhook",
        }
    ]
    record = (
        "from release_orchestrator.webhooks.deliveries import DeliveryStore; import json, sys; "
        "print(DeliveryStore().record(sys.argv[1], sys.argv[2], 'github', json.loads(sys.argv[3])).outcome)"
    )
    out = subprocess.run(
        [sys.executable, "-c", record, delivery, run_id.split("__")[2], json.dumps(starts)],
        env=airflow_env.airflow_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "new"

    run = api.wait_for_run_created("webhook-main", run_id, timeout=60)
    assert run["conf"]["source"]["commit_id"] == sha
    assert run["note"] == "recorded elsewhere"


def _raw_post(url: str, head: str, chunks) -> tuple[int, str]:
    """Send a request over a plain socket, so the server can answer before the body is complete."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading the rest
        response = b""
        while b"\r\n\r\n" not in response or len(response) < 12:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    status_line, _, rest = response.decode(errors="replace").partition("\r\n")
    return int(status_line.split()[1]), rest


def test_oversize_body_is_refused_by_content_length_without_reading_it(url, api):
    path = urlsplit(url).path + "/github"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\n"
        f"Content-Length: {LIMIT + 1}\r\n\r\n"
    )
    status, _ = _raw_post(url, head, [b"{"])  # the rest never comes: the answer must not wait for it
    assert status == 413


def test_oversize_body_without_content_length_is_refused(url):
    path = urlsplit(url).path + "/github"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    megabyte = b"x" * (1024 * 1024)
    chunk = f"{len(megabyte):x}\r\n".encode() + megabyte + b"\r\n"
    status, _ = _raw_post(url, head, [chunk] * 26)
    assert status == 413


def test_malformed_json_and_missing_fields_are_400(url):
    body = b'{"ref": "refs/heads/main", '
    response = httpx.post(
        f"{url}/github",
        content=body,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(body, SECRET),
        },
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")

    payload = github_push_payload(REPO, "main", commit(), ["src/app.py"])
    del payload["ref"]
    response = send_github(f"{url}/github", SECRET, "push", payload)
    assert response.status_code == 400
    assert response.json() == {"error": "ref: missing", "field": "ref"}


def test_non_matching_push_starts_nothing(url, api):
    before = run_ids(api)
    response = push(url, branch="dev")
    assert started(response) == {}
    assert "'dev' matches none of the includes (main, release/*)" in not_started(response)["webhook-main"]
    assert run_ids(api) == before


@pytest.mark.parametrize(
    "branch,files,expected",
    [
        ("release/2.1", ["src/a.py"], ["webhook-main"]),  # branch includes
        ("release/old-1", ["src/a.py"], []),  # branch excludes win
        ("main", ["docs/index.md"], ["webhook-docs", "webhook-main"]),  # file path includes
        ("main", ["docs/drafts/idea.md"], ["webhook-main"]),  # file path excludes win
    ],
)
def test_branch_and_path_filters(url, branch, files, expected):
    assert sorted(started(push(url, branch=branch, files=files))) == expected


@pytest.mark.parametrize("tag,expected", [("v1.4.0", ["webhook-tags"]), ("v1.5.0-rc1", []), ("nightly", [])])
def test_tag_filters(url, tag, expected):
    payload = github_push_payload(REPO, "main", commit(), [], tag=tag)
    response = send_github(f"{url}/github", SECRET, "push", payload)
    assert sorted(started(response)) == expected
    if not expected:
        assert "triggers[0].push.tags" in not_started(response)["webhook-tags"]


def pull_request(action: str, base: str = "main", number: int = 5) -> dict:
    return {
        "action": action,
        "number": number,
        "repository": {"full_name": REPO, "html_url": f"https://github.com/{REPO}"},
        "pull_request": {
            "number": number,
            "title": "Make it faster",
            "user": {"login": "dev"},
            "updated_at": "2024-05-01T10:00:00Z",
            "head": {"ref": "feature/fast", "sha": commit()},
            "base": {"ref": base},
        },
    }


def test_pull_request_events(url, api):
    opened = send_github(f"{url}/github", SECRET, "pull_request", pull_request("opened"))
    assert list(started(opened)) == ["webhook-pr"]
    conf = api.get_run("webhook-pr", started(opened, api)["webhook-pr"])["conf"]["source"]
    assert conf["branch"] == "feature/fast"
    assert conf["pull_request"] == {
        "number": 5,
        "action": "opened",
        "source_branch": "feature/fast",
        "destination_branch": "main",
        "title": "Make it faster",
    }

    assert list(started(send_github(f"{url}/github", SECRET, "pull_request", pull_request("synchronize")))) == [
        "webhook-pr"
    ]
    closed = send_github(f"{url}/github", SECRET, "pull_request", pull_request("closed"))
    assert started(closed) == {}
    assert "is not one of opened, updated" in not_started(closed)["webhook-pr"]
    other_base = send_github(f"{url}/github", SECRET, "pull_request", pull_request("opened", base="dev"))
    assert started(other_base) == {}
    labeled = send_github(f"{url}/github", SECRET, "pull_request", pull_request("labeled"))
    assert labeled.status_code == 202


def test_ping_and_unknown_events(url, api):
    before = run_ids(api)
    ping_body = {"zen": "Design for failure.", "repository": {"full_name": REPO}}
    ping = send_github(f"{url}/github", SECRET, "ping", ping_body)
    assert ping.status_code == 200
    issues = send_github(f"{url}/github", SECRET, "issues", {"action": "opened", "repository": {"full_name": REPO}})
    assert issues.status_code == 202
    assert issues.json()["ignored"] is True and "'issues'" in issues.json()["reason"]
    assert run_ids(api) == before


def test_paused_pipeline_is_not_started(url, api):
    api.request("PATCH", "/dags/webhook-tags", json={"is_paused": True})
    try:
        payload = github_push_payload(REPO, "main", commit(), [], tag="v9.0.0")
        response = send_github(f"{url}/github", SECRET, "push", payload)
        assert started(response) == {}
        assert not_started(response)["webhook-tags"] == "the pipeline is paused"
    finally:
        api.unpause("webhook-tags")


def test_secret_from_a_connection(url, api):
    repository = "acme/hooks-conn"
    connection_id = secret_connection(repository)
    api.request(
        "POST",
        "/connections",
        json={"connection_id": connection_id, "conn_type": "generic", "password": "from-a-connection"},
    )
    try:
        payload = {"zen": "Speak like a human.", "repository": {"full_name": repository}}
        assert send_github(f"{url}/github", "from-a-connection", "ping", payload).status_code == 200
        assert send_github(f"{url}/github", SECRET, "ping", payload).status_code == 401
    finally:
        api.request("DELETE", f"/connections/{connection_id}")


def test_bitbucket_push(url, api):
    set_variable(api, secret_variable("acme/hooks-bb"), "bb-secret")
    body = json.dumps(
        {
            "repository": {"full_name": "acme/hooks-bb"},
            "push": {
                "changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": commit(), "message": "m"}}}]
            },
        }
    ).encode()
    headers = {
        "X-Event-Key": "repo:push",
        "X-Request-UUID": str(uuid.uuid4()),
        "X-Hub-Signature": sign(body, "bb-secret"),
    }
    response = httpx.post(f"{url}/bitbucket", content=body, headers=headers)
    # No test pipeline watches acme/hooks-bb: accepted, and nothing to start.
    assert response.status_code == 200, response.text
    assert response.json()["started"] == [] and response.json()["not_started"] == []
    headers["X-Hub-Signature"] = sign(body, "wrong")
    assert httpx.post(f"{url}/bitbucket", content=body, headers=headers).status_code == 401
