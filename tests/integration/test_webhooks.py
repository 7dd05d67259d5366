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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from include.localenv.airflow_api import AirflowAPIError
from include.localenv.webhook_client import github_push_payload, send_github, send_github_push, sign
from release_orchestrator.webhooks.runs import body_digest
from release_orchestrator.webhooks.signatures import secret_connection, secret_variable
from tests.integration.helpers import wait_for, wait_for_run

pytestmark = pytest.mark.integration

REPO = "acme/hooks"
SECRET = "integration-webhook-secret"
DAGS = (
    "webhook-main",
    "webhook-docs",
    "webhook-tags",
    "webhook-pr",
    "webhook-forks",
    "webhook-bitbucket",
    "webhook-generic",
)
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


def runs_since(url: str, api, before: set) -> set[tuple[str, str]]:
    """The runs created since `before`, read once the api-server's starter has no recorded delivery left
    (the answer comes when a delivery is recorded; its runs are created just after)."""
    wait_for(
        lambda: httpx.get(f"{url}/health").json()["deliveries"]["waiting"] == 0,
        60,
        interval=0.1,
        what="the webhook starter to create the runs of every recorded delivery",
    )
    return run_ids(api) - before


def deliver(url: str, api, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, dict[str, str]]:
    """Send a delivery; returns the answer and the runs it really started (dag_id -> run_id), which must be
    the runs the answer names and no others."""
    before = run_ids(api)
    response = send()
    assert response.status_code == 200, response.text
    named = {(s["dag_id"], s["run_id"]) for s in response.json()["started"]}
    created = runs_since(url, api, before)
    assert created == named, f"the answer named {sorted(named)}; Airflow has the new runs {sorted(created)}"
    return response, dict(created)


def started(url: str, api, send: Callable[[], httpx.Response]) -> dict[str, str]:
    return deliver(url, api, send)[1]


def assert_nothing_started(url: str, api, send: Callable[[], httpx.Response], status: int) -> httpx.Response:
    before = run_ids(api)
    response = send()
    assert response.status_code == status, response.text
    assert runs_since(url, api, before) == set()
    return response


def not_started(response: httpx.Response) -> dict[str, str]:
    return {s["dag_id"]: s["reason"] for s in response.json()["not_started"]}


def test_plugin_is_served_by_the_api_server(url, api):
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    plugins = api.request("GET", "/plugins")["plugins"]
    assert "release_orchestrator" in [p["name"] for p in plugins]


def test_signed_push_starts_a_run_with_the_source_in_its_conf(url, api):
    sha, delivery = commit(), str(uuid.uuid4())
    response, runs = deliver(
        url,
        api,
        lambda: send_github_push(
            f"{url}/github", SECRET, REPO, "main", sha, ["src/app.py", "README.md"], delivery_id=delivery
        ),
    )
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
    runs = started(url, api, lambda: push(url, files=["docs/guide.md", "src/app.py"]))
    assert sorted(runs) == ["webhook-docs", "webhook-main"]


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
    assert_nothing_started(url, api, lambda: httpx.post(f"{url}/github", content=body, headers=headers), 401)


def test_signed_with_the_wrong_secret_is_refused(url, api):
    response = assert_nothing_started(
        url,
        api,
        lambda: send_github_push(f"{url}/github", "not-the-secret", REPO, "main", commit(), ["src/app.py"]),
        401,
    )
    assert response.json()["error"] == "X-Hub-Signature-256 does not match"


def test_replayed_delivery_starts_nothing_new(url, api, airflow_env):
    payload = github_push_payload(REPO, "main", commit(), ["src/app.py"])
    delivery = str(uuid.uuid4())
    first = started(url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload, delivery_id=delivery))
    assert list(first) == ["webhook-main"]

    again = assert_nothing_started(
        url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload, delivery_id=delivery), 200
    )
    assert again.json()["duplicate"] is True
    assert again.json()["runs"] == [{"dag_id": d, "run_id": r} for d, r in sorted(first.items())]
    # The same signed body under another delivery id is a replay as well.
    resent = assert_nothing_started(
        url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload, delivery_id=str(uuid.uuid4())), 200
    )
    assert resent.json()["duplicate"] is True

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


def test_the_same_delivery_sent_twice_at_once_starts_one_run(url, api):
    payload, delivery = github_push_payload(REPO, "main", commit(), ["src/app.py"]), str(uuid.uuid4())
    before = run_ids(api)
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: send_github(f"{url}/github", SECRET, "push", payload, delivery_id=delivery), range(2))
        )
    assert [a.status_code for a in answers] == [200, 200]
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True]
    assert [dag_id for dag_id, _ in runs_since(url, api, before)] == ["webhook-main"]


RUN_STARTER_PROBE = """
import json, os, pathlib, sys, time
from release_orchestrator.webhooks.runs import AirflowRuns, AlreadyStarted

runs, run_id, conf, meeting = AirflowRuns(), sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])
report = {"blockers": runs.blockers(["webhook-main", "webhook-tags", "no-such-pipeline"]), "outcomes": []}
(meeting / str(os.getpid())).touch()
while len(list(meeting.iterdir())) < 2:  # both ready: start the same run at the same moment
    time.sleep(0.01)
for _ in range(2):  # the second time, the run exists whoever won
    try:
        report["outcomes"].append(runs.start("webhook-main", run_id, conf, note="probe", user="probe"))
    except AlreadyStarted:
        report["outcomes"].append("already started")
print(json.dumps(report))
"""


def test_the_run_starter_names_blockers_and_creates_a_run_once_when_two_race(url, api, airflow_env, tmp_path):
    """webhooks.runs.AirflowRuns against the environment's metadata DB, in two processes as two api-server
    starters would be: why a pipeline cannot start, and the unique run id making two starts of one run one run."""
    from release_orchestrator.webhooks import payloads

    data = github_push_payload(REPO, "main", commit(), ["src/app.py"])
    delivery = str(uuid.uuid4())
    source = payloads.parse_events("github", "push", "push", data, delivery)[0].source
    run_id = f"webhook__{delivery}__{body_digest(json.dumps(data).encode())}"
    command = [sys.executable, "-c", RUN_STARTER_PROBE, run_id, json.dumps({"source": source}), str(tmp_path)]
    api.request("PATCH", "/dags/webhook-tags", json={"is_paused": True})
    try:
        probes = [
            subprocess.Popen(command, env=airflow_env.airflow_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        reports = []
        for probe in probes:
            try:
                out, err = probe.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                probe.kill()
                out, err = probe.communicate()
            assert probe.returncode == 0, err.decode()[-3000:]
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        api.unpause("webhook-tags")
    for report in reports:
        assert report["blockers"] == {
            "webhook-tags": "the pipeline is paused",
            "no-such-pipeline": "the pipeline's DAG is not loaded in Airflow (is its spec valid and parsed yet?)",
        }
    outcomes = sorted(outcome for report in reports for outcome in report["outcomes"])
    assert outcomes == sorted([run_id, "already started", "already started", "already started"])
    run = api.get_run("webhook-main", run_id)
    assert (run["note"], run["conf"]["source"]["commit_id"]) == ("probe", source["commit_id"])


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


def test_malformed_json_and_missing_fields_are_400(url, api):
    body = b'{"ref": "refs/heads/main", '
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, SECRET),
    }
    response = assert_nothing_started(url, api, lambda: httpx.post(f"{url}/github", content=body, headers=headers), 400)
    assert response.json()["error"].startswith("body is not valid JSON")

    payload = github_push_payload(REPO, "main", commit(), ["src/app.py"])
    del payload["ref"]
    response = assert_nothing_started(url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload), 400)
    assert response.json() == {"error": "ref: missing", "field": "ref"}


def test_non_matching_push_starts_nothing(url, api):
    response = assert_nothing_started(url, api, lambda: push(url, branch="dev"), 200)
    assert response.json()["started"] == []
    assert "'dev' matches none of the includes (main, release/*)" in not_started(response)["webhook-main"]


@pytest.mark.parametrize(
    "branch,files,expected",
    [
        ("release/2.1", ["src/a.py"], ["webhook-main"]),  # branch includes
        ("release/old-1", ["src/a.py"], []),  # branch excludes win
        ("main", ["docs/index.md"], ["webhook-docs", "webhook-main"]),  # file path includes
        ("main", ["docs/drafts/idea.md"], ["webhook-main"]),  # file path excludes win
    ],
)
def test_branch_and_path_filters(url, api, branch, files, expected):
    assert sorted(started(url, api, lambda: push(url, branch=branch, files=files))) == expected


@pytest.mark.parametrize("tag,expected", [("v1.4.0", ["webhook-tags"]), ("v1.5.0-rc1", []), ("nightly", [])])
def test_tag_filters(url, api, tag, expected):
    payload = github_push_payload(REPO, "main", commit(), [], tag=tag)
    response, runs = deliver(url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload))
    assert sorted(runs) == expected
    if not expected:
        assert "triggers[0].push.tags" in not_started(response)["webhook-tags"]


def pull_request(action: str, base: str = "main", number: int = 5, head_repository: str | None = REPO) -> dict:
    """A GitHub pull_request delivery; `head_repository` other than REPO is a fork, None a deleted fork."""
    return {
        "action": action,
        "number": number,
        "repository": {"full_name": REPO, "html_url": f"https://github.com/{REPO}"},
        "pull_request": {
            "number": number,
            "title": "Make it faster",
            "user": {"login": "dev"},
            "updated_at": "2024-05-01T10:00:00Z",
            "head": {
                "ref": "feature/fast",
                "sha": commit(),
                "repo": {"full_name": head_repository} if head_repository else None,
            },
            "base": {"ref": base, "repo": {"full_name": REPO}},
        },
    }


def test_pull_request_events(url, api):
    def send(action: str, base: str = "main") -> Callable[[], httpx.Response]:
        return lambda: send_github(f"{url}/github", SECRET, "pull_request", pull_request(action, base=base))

    opened = started(url, api, send("opened"))
    assert list(opened) == ["webhook-pr"]
    conf = api.get_run("webhook-pr", opened["webhook-pr"])["conf"]["source"]
    assert conf["branch"] == "feature/fast"
    assert conf["pull_request"] == {
        "number": 5,
        "action": "opened",
        "source_branch": "feature/fast",
        "destination_branch": "main",
        "title": "Make it faster",
        "source_repository": REPO,
        "from_fork": False,
    }

    assert list(started(url, api, send("synchronize"))) == ["webhook-pr"]
    closed = assert_nothing_started(url, api, send("closed"), 200)
    assert "is not one of opened, updated" in not_started(closed)["webhook-pr"]
    other_base = assert_nothing_started(url, api, send("opened", base="dev"), 200)
    assert "triggers[0].pull_request.branches" in not_started(other_base)["webhook-pr"]
    assert_nothing_started(url, api, send("labeled"), 202)


def test_pull_requests_from_forks_start_nothing_unless_the_trigger_allows_forks(url, api):
    def send(base: str, head_repository: str | None) -> Callable[[], httpx.Response]:
        payload = pull_request("opened", base=base, head_repository=head_repository)
        return lambda: send_github(f"{url}/github", SECRET, "pull_request", payload)

    refused = assert_nothing_started(url, api, send("main", "outsider/hooks"), 200)
    assert not_started(refused)["webhook-pr"] == (
        "pull request from the fork outsider/hooks: triggers[0] does not say from_forks: true"
    )
    deleted = assert_nothing_started(url, api, send("main", None), 200)
    assert not_started(deleted)["webhook-pr"].startswith("pull request from a deleted fork")

    # webhook-forks says from_forks: true for pull requests into contrib.
    runs = started(url, api, send("contrib", "outsider/hooks"))
    assert list(runs) == ["webhook-forks"]
    pr = api.get_run("webhook-forks", runs["webhook-forks"])["conf"]["source"]["pull_request"]
    assert (pr["from_fork"], pr["source_repository"]) == (True, "outsider/hooks")


def test_a_delivery_that_started_nothing_is_recorded_so_its_replay_starts_nothing(url, api):
    payload, delivery = github_push_payload(REPO, "main", commit(), [], tag="v9.1.0"), str(uuid.uuid4())
    api.request("PATCH", "/dags/webhook-tags", json={"is_paused": True})
    try:
        first = assert_nothing_started(
            url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload, delivery_id=delivery), 200
        )
        assert not_started(first)["webhook-tags"] == "the pipeline is paused"
    finally:
        api.unpause("webhook-tags")
    # Unpaused, the pipeline would start for this tag; the captured delivery, replayed, still starts nothing.
    for replay_id in (delivery, str(uuid.uuid4())):
        again = assert_nothing_started(
            url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload, delivery_id=replay_id), 200
        )
        assert again.json()["duplicate"] is True and again.json()["runs"] == []
    fresh = github_push_payload(REPO, "main", commit(), [], tag="v9.1.0")
    assert list(started(url, api, lambda: send_github(f"{url}/github", SECRET, "push", fresh))) == ["webhook-tags"]


def test_hostile_bodies_are_refused_and_start_nothing(url, api):
    def post(body: bytes, signature: str) -> Callable[[], httpx.Response]:
        headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": signature}
        return lambda: httpx.post(f"{url}/github", content=body, headers=headers, timeout=60)

    deep = b"[" * 200_000 + b"]" * 200_000
    # Unsigned: refused on the raw bytes, before any parsing (a deep array used to be a 500).
    unsigned = assert_nothing_started(url, api, post(deep, "sha256=" + "0" * 64), 401)
    assert unsigned.json() == {"error": "X-Hub-Signature-256 does not match"}
    assert_nothing_started(url, api, post(b"\xff not even text", "sha256=" + "0" * 64), 401)
    # Signed by the repository's secret, and still refused with a reason.
    too_deep = assert_nothing_started(url, api, post(deep, sign(deep, SECRET)), 400)
    assert too_deep.json()["error"] == "body is not valid JSON: arrays or objects nested too deeply"
    payload = github_push_payload(REPO, "main", commit(), ["src/app.py"])
    payload["head_commit"]["author"] = "mona"
    body = json.dumps(payload).encode()
    mistyped = assert_nothing_started(url, api, post(body, sign(body, SECRET)), 400)
    assert mistyped.json() == {
        "error": "head_commit.author: expected an object, got a string",
        "field": "head_commit.author",
    }


def test_ping_and_unknown_events(url, api):
    ping_body = {"zen": "Design for failure.", "repository": {"full_name": REPO}}
    assert_nothing_started(url, api, lambda: send_github(f"{url}/github", SECRET, "ping", ping_body), 200)
    issue = {"action": "opened", "repository": {"full_name": REPO}}
    issues = assert_nothing_started(url, api, lambda: send_github(f"{url}/github", SECRET, "issues", issue), 202)
    assert issues.json()["ignored"] is True and "'issues'" in issues.json()["reason"]


def test_paused_pipeline_is_not_started(url, api):
    api.request("PATCH", "/dags/webhook-tags", json={"is_paused": True})
    try:
        payload = github_push_payload(REPO, "main", commit(), [], tag="v9.0.0")
        response = assert_nothing_started(url, api, lambda: send_github(f"{url}/github", SECRET, "push", payload), 200)
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


def test_bitbucket_push_starts_a_run_of_the_commit(url, api):
    repository, secret, sha = "acme/hooks-bitbucket", "bb-secret", commit()
    set_variable(api, secret_variable(repository), secret)
    change = {"new": {"type": "branch", "name": "main", "target": {"hash": sha, "message": "Fix the login"}}}
    body = json.dumps({"repository": {"full_name": repository}, "push": {"changes": [change]}}).encode()
    headers = {"X-Event-Key": "repo:push", "X-Request-UUID": str(uuid.uuid4()), "X-Hub-Signature": sign(body, secret)}

    _, runs = deliver(url, api, lambda: httpx.post(f"{url}/bitbucket", content=body, headers=headers))
    assert list(runs) == ["webhook-bitbucket"]
    source = api.get_run("webhook-bitbucket", runs["webhook-bitbucket"])["conf"]["source"]
    assert (source["provider"], source["repository"], source["branch"]) == ("bitbucket", repository, "main")
    assert (source["commit_id"], source["commit_message"]) == (sha, "Fix the login")
    assert wait_for_run(api, "webhook-bitbucket", runs["webhook-bitbucket"], timeout=180)["state"] == "success"
    assert api.xcom("webhook-bitbucket", runs["webhook-bitbucket"], "Source.Checkout")["CommitId"] == sha

    headers.update({"X-Request-UUID": str(uuid.uuid4()), "X-Hub-Signature": sign(body, "wrong")})
    assert_nothing_started(url, api, lambda: httpx.post(f"{url}/bitbucket", content=body, headers=headers), 401)


def test_generic_push_starts_a_run_of_the_commit(url, api):
    repository, secret, sha = "acme/hooks-generic", "generic-secret", commit()
    set_variable(api, secret_variable(repository), secret)

    def send(document: dict, key: str = secret) -> Callable[[], httpx.Response]:
        body = json.dumps(document).encode()
        headers = {"X-Delivery-Id": str(uuid.uuid4()), "X-Signature-256": sign(body, key)}
        return lambda: httpx.post(
            f"{url}/generic", content=body, headers={**headers, "Content-Type": "application/json"}
        )

    push = {"repository": repository, "branch": "main", "commit_id": sha, "changed_files": ["src/a.py"]}
    _, runs = deliver(url, api, send(push))
    assert list(runs) == ["webhook-generic"]
    source = api.get_run("webhook-generic", runs["webhook-generic"])["conf"]["source"]
    assert (source["provider"], source["branch"], source["commit_id"]) == ("generic", "main", sha)
    assert source["changed_files"] == ["src/a.py"]
    assert wait_for_run(api, "webhook-generic", runs["webhook-generic"], timeout=180)["state"] == "success"

    assert_nothing_started(url, api, send({**push, "commit_id": commit()}, key="wrong"), 401)
    assert_nothing_started(url, api, send({**push, "commit_id": commit(), "branch": "dev"}), 200)
    missing = assert_nothing_started(url, api, send({"repository": repository, "branch": "main"}), 400)
    assert missing.json()["field"] == "commit_id"
