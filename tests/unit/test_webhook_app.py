"""The webhook app in-process: status codes, responses, run ids and replays.

Airflow's runs are replaced by a fake; the record of deliveries is the real one, on a SQLite file.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from include.localenv.webhook_client import github_push_payload, sign
from release_orchestrator.pipeline.model import Pipeline
from release_orchestrator.webhooks import deliveries, runs
from release_orchestrator.webhooks.app import Receiver, create_app

SECRET = "s3cret"
SHA = "a" * 40


class FakeAirflow:
    def __init__(self):
        self.runs: dict[tuple[str, str], dict] = {}
        self.paused: set[str] = set()
        self.failing: set[str] = set()

    def blockers(self, dag_ids):
        return {dag_id: "the pipeline is paused" for dag_id in dag_ids if dag_id in self.paused}

    def start(self, dag_id, run_id, conf, note, user):
        if dag_id in self.failing:
            raise RuntimeError("database is locked")
        if (dag_id, run_id) in self.runs:
            raise runs.AlreadyStarted(run_id)
        self.runs[(dag_id, run_id)] = {"conf": conf, "note": note, "user": user}
        return run_id


def spec(name: str, *triggers: dict) -> Pipeline:
    return Pipeline(name=name, triggers=list(triggers))


PIPELINES = [
    spec("main-release", {"repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}}),
    spec(
        "docs-site",
        {
            "repository": "acme/webapp",
            "push": {"branches": {"includes": ["main"]}, "file_paths": {"includes": ["docs/**"]}},
        },
    ),
    spec("tagged", {"repository": "acme/webapp", "push": {"tags": {"includes": ["v*"]}}}),
    spec("unrelated", {"repository": "acme/other", "push": {"branches": {"includes": ["main"]}}}),
    spec("bb", {"provider": "bitbucket", "repository": "acme/api", "push": {"branches": {"includes": ["main"]}}}),
    spec(
        "gen",
        {
            "provider": "generic",
            "repository": "acme/tool",
            "pull_request": {"events": ["opened"], "file_paths": {"includes": ["src/**"]}},
        },
    ),
]


@pytest.fixture
def airflow():
    return FakeAirflow()


@pytest.fixture
def store(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'metadata.db'}")

    @contextmanager
    def session_scope():
        with Session(engine) as session, session.begin():
            yield session

    return deliveries.DeliveryStore(session_scope)


@pytest.fixture
def receiver(airflow, store):
    secrets = {"acme/webapp": SECRET, "acme/api": "bb-secret", "acme/tool": "gen-secret"}
    return Receiver(own_secret=secrets.get, airflow=airflow, load_pipelines=lambda: PIPELINES, store=store)


def draining_client(receiver: Receiver) -> TestClient:
    """Without the app's lifespan, so no starter thread: each request drains the recorded deliveries itself."""
    receiver.starter.autostart = False
    test_client = TestClient(create_app(receiver))
    post = test_client.post

    def post_then_start_runs(*args, **kwargs):
        response = post(*args, **kwargs)
        receiver.starter.drain()
        return response

    test_client.post = post_then_start_runs
    return test_client


@pytest.fixture
def client(receiver):
    return draining_client(receiver)


def github(client, payload, event="push", delivery="d-1", secret=SECRET, signature=None, raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature if signature is not None else sign(body, secret),
    }
    return client.post("/github", content=body, headers=headers)


def test_health_counts_the_deliveries_still_waiting_for_their_runs(receiver, airflow):
    receiver.starter.autostart = False
    client = TestClient(create_app(receiver))  # no lifespan: no starter thread
    assert client.get("/health").json()["deliveries"] == {"waiting": 0, "failed": 0}

    assert github(client, github_push_payload("acme/webapp", "main", SHA, ["src/a.py"])).status_code == 200
    assert client.get("/health").json()["deliveries"] == {"waiting": 1, "failed": 0}
    receiver.starter.drain()
    assert client.get("/health").json() == {
        "status": "ok",
        "endpoints": ["/github", "/bitbucket", "/generic"],
        "deliveries": {"waiting": 0, "failed": 0},
    }
    assert airflow.runs  # drained means started


def test_health_is_503_when_the_delivery_record_cannot_be_read(receiver, monkeypatch):
    def unreadable():
        raise deliveries.SQLAlchemyError('could not connect to server at "db.internal" (10.0.0.5), port 5432')

    monkeypatch.setattr(receiver.store, "backlog", unreadable)
    response = TestClient(create_app(receiver)).get("/health")
    assert response.status_code == 503
    assert response.json()["error"] == "the metadata DB cannot be read"
    assert "db.internal" not in response.text  # anyone may ask: the details are in the api-server's log


def test_push_starts_matching_pipelines_with_the_source_conf(client, airflow):
    payload = github_push_payload("acme/webapp", "main", SHA, ["docs/index.md"])
    response = github(client, payload, delivery="d-1")
    assert response.status_code == 200, response.text
    body = response.json()
    digest = runs.body_digest(json.dumps(payload).encode())
    run_id = f"webhook__d-1__{digest}"
    assert body["duplicate"] is False
    assert {(s["dag_id"], s["run_id"]) for s in body["started"]} == {("main-release", run_id), ("docs-site", run_id)}
    assert [(n["dag_id"], n["reason"]) for n in body["not_started"]] == [
        ("tagged", "no filter matched: triggers[0].push: a branch push, and this filter is for tags")
    ]
    run = airflow.runs[("main-release", run_id)]
    assert run["conf"]["source"]["commit_id"] == SHA
    assert run["conf"]["source"]["changed_files"] == ["docs/index.md"]
    assert run["conf"]["source"]["delivery_id"] == "d-1"
    assert run["user"] == "github-webhook"
    assert run["note"] == f"Started by github webhook: acme/webapp push to main ({SHA[:12]})"


def test_file_filter_leaves_a_pipeline_out(client):
    body = github(client, github_push_payload("acme/webapp", "main", SHA, ["src/app.py"])).json()
    assert [s["dag_id"] for s in body["started"]] == ["main-release"]
    reasons = {n["dag_id"]: n["reason"] for n in body["not_started"]}
    assert reasons["docs-site"].startswith("no filter matched: triggers[0].push.file_paths: none of the 1 changed")


def test_non_matching_push_starts_nothing(client, airflow):
    response = github(client, github_push_payload("acme/webapp", "dev", SHA, ["a.py"]))
    assert response.status_code == 200
    assert response.json()["started"] == []
    assert airflow.runs == {}


def test_replayed_delivery_starts_nothing(client, airflow):
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    first = github(client, payload, delivery="d-2").json()
    again = github(client, payload, delivery="d-2")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["started"] == []
    assert again.json()["runs"] == [{"dag_id": s["dag_id"], "run_id": s["run_id"]} for s in first["started"]]
    # The signature covers the body only: the same body under a new delivery id is a replay too.
    assert github(client, payload, delivery="d-3").json()["duplicate"] is True
    assert len(airflow.runs) == 1


def test_paused_pipeline_is_reported(client, airflow):
    airflow.paused.add("main-release")
    body = github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"])).json()
    assert body["started"] == []
    assert body["not_started"][0]["dag_id"] == "main-release"
    assert body["not_started"][0]["reason"] == "the pipeline is paused"


def test_runs_that_fail_to_start_are_retried_then_left_failed_until_redelivered(
    client, airflow, receiver, store, monkeypatch
):
    monkeypatch.setattr(deliveries, "RETRY_SECONDS", 0)
    payload = github_push_payload("acme/webapp", "main", SHA, ["docs/index.md"])  # main-release and docs-site
    airflow.failing.add("docs-site")
    first = github(client, payload, delivery="d-9")
    assert first.status_code == 200  # accepted: recorded before the answer, the runs come after it
    assert [s["dag_id"] for s in first.json()["started"]] == ["main-release", "docs-site"]
    record = store.get("d-9")
    assert record["state"] == deliveries.FAILED and record["attempts"] == deliveries.MAX_ATTEMPTS
    assert record["error"] == "docs-site: database is locked"
    assert sorted(dag for dag, _ in airflow.runs) == ["main-release"]  # created once, not once per attempt

    airflow.failing.clear()
    again = github(client, payload, delivery="d-9")  # the sender redelivers: the delivery goes again
    assert again.status_code == 200 and again.json()["duplicate"] is False
    assert store.get("d-9")["state"] == deliveries.DONE
    assert sorted(dag for dag, _ in airflow.runs) == ["docs-site", "main-release"]
    assert github(client, payload, delivery="d-9").json()["duplicate"] is True  # and now it is done


def test_a_failed_attempt_waits_before_the_next(client, airflow, store):
    airflow.failing.add("main-release")
    github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"]), delivery="d-10")
    record = store.get("d-10")
    assert record["state"] == deliveries.PENDING and record["attempts"] == 1
    assert record["next_attempt_at"] > record["received_at"] + deliveries.RETRY_SECONDS * 0.9
    assert airflow.runs == {}


def test_deliveries_recorded_before_a_restart_are_started_by_the_next_starter(airflow, store):
    recorded = store.record(
        "d-11",
        "0123456789abcdef",
        "github",
        [
            {
                "dag_id": "main-release",
                "run_id": "webhook__d-11__0123456789abcdef",
                "conf": {"source": {}},
                "note": "n",
                "user": "github-webhook",
            }
        ],
    )
    assert recorded.outcome == "new" and airflow.runs == {}
    starter = deliveries.Starter(store, airflow, poll_seconds=0.05)
    starter.start()
    try:
        import time

        deadline = time.monotonic() + 10
        while store.get("d-11")["state"] != deliveries.DONE and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        starter.stop()
    assert list(airflow.runs) == [("main-release", "webhook__d-11__0123456789abcdef")]


def test_a_claimed_delivery_whose_starter_died_is_taken_up_after_its_lease(airflow, store, monkeypatch):
    store.record(
        "d-12",
        "fedcba9876543210",
        "github",
        [{"dag_id": "main-release", "run_id": "webhook__d-12__fedcba9876543210", "conf": {}, "note": "n", "user": "u"}],
    )
    assert [c.delivery_id for c in store.claim()] == ["d-12"]  # then the process dies
    assert store.claim() == []  # leased
    monkeypatch.setattr(
        deliveries.time, "time", lambda real=deliveries.time.time: real() + deliveries.LEASE_SECONDS + 1
    )
    assert [c.delivery_id for c in store.claim()] == ["d-12"]


def test_old_deliveries_are_forgotten(store, monkeypatch):
    store.record(
        "d-13",
        "1111111111111111",
        "github",
        [{"dag_id": "x", "run_id": "webhook__d-13__1111111111111111", "conf": {}, "note": "n", "user": "u"}],
    )
    store.finish(store.claim()[0], [])
    assert store.forget_older_than(days=1) == 0
    monkeypatch.setattr(deliveries.time, "time", lambda real=deliveries.time.time: real() + 2 * 86400)
    assert store.forget_older_than(days=1) == 1
    assert store.get("d-13") is None


@pytest.mark.parametrize(
    "signature,message",
    [
        ("", "missing X-Hub-Signature-256 header"),
        ("sha256=" + "0" * 64, "X-Hub-Signature-256 does not match"),
        ("sha1=" + "0" * 40, "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
        ("sha256=xyz", "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
    ],
)
def test_bad_signatures_are_401_and_start_nothing(client, airflow, signature, message):
    response = github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"]), signature=signature)
    assert response.status_code == 401
    assert response.json()["error"] == message
    assert airflow.runs == {}


def test_signed_with_another_repositorys_secret_is_401(client):
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    assert github(client, payload, secret="bb-secret").status_code == 401


def test_unknown_repository_without_global_secret_is_401(client):
    payload = github_push_payload("acme/unknown", "main", SHA, ["a.py"])
    assert github(client, payload, secret="anything").status_code == 401


def test_malformed_json_is_400(client):
    response = github(client, None, raw=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")
    assert github(client, None, raw=b"[1, 2]").json()["error"] == "body must be a JSON object"


def test_missing_field_is_400_naming_it(client):
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    del payload["ref"]
    response = github(client, payload)
    assert response.status_code == 400
    assert response.json() == {"error": "ref: missing", "field": "ref"}


def test_missing_or_bad_delivery_id_is_400(client):
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    assert github(client, payload, delivery="").json()["field"] == "X-GitHub-Delivery"
    assert github(client, payload, delivery="a/../b").status_code == 400
    assert github(client, payload, delivery="a__b").status_code == 400


def test_unknown_event_is_202_and_ping_is_200(client, airflow):
    response = github(client, {"action": "opened", "repository": {"full_name": "acme/webapp"}}, event="issues")
    assert response.status_code == 202
    assert response.json() == {
        "ignored": True,
        "reason": "github event 'issues' starts nothing (push and pull request events do)",
    }
    ping = github(
        client, {"zen": "Keep it logically awesome.", "repository": {"full_name": "acme/webapp"}}, event="ping"
    )
    assert ping.status_code == 200 and ping.json()["event"] == "ping"
    assert airflow.runs == {}


def test_unknown_event_with_a_bad_signature_is_still_401(client):
    response = github(
        client, {"repository": {"full_name": "acme/webapp"}}, event="issues", signature="sha256=" + "1" * 64
    )
    assert response.status_code == 401


@pytest.fixture
def small_client(receiver):
    return TestClient(create_app(receiver, max_body_bytes=50))


def test_oversize_by_content_length_is_413(small_client):
    body = b'{"a": "' + b"x" * 100 + b'"}'
    response = small_client.post("/github", content=body, headers={"X-Hub-Signature-256": sign(body, SECRET)})
    assert response.status_code == 413
    assert response.json()["error"] == "body of 109 bytes is over the limit of 50 bytes"


def test_oversize_without_content_length_is_413(small_client):
    def chunks():  # chunked transfer: no Content-Length, so the limit applies to the bytes read
        for _ in range(10):
            yield b"x" * 20

    response = small_client.post("/github", content=chunks(), headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert response.status_code == 413
    assert response.json()["error"] == "body is over the limit of 50 bytes"


def test_bitbucket_push_signed_with_x_hub_signature(client, airflow):
    payload = {
        "repository": {"full_name": "acme/api"},
        "push": {"changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": SHA, "message": "m"}}}]},
    }
    body = json.dumps(payload).encode()
    headers = {"X-Event-Key": "repo:push", "X-Request-UUID": "{9a1b-22}", "X-Hub-Signature": sign(body, "bb-secret")}
    response = client.post("/bitbucket", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert [(s["dag_id"], s["run_id"]) for s in response.json()["started"]] == [
        ("bb", f"webhook__9a1b-22__{runs.body_digest(body)}")
    ]
    headers["X-Hub-Signature-256"] = headers.pop("X-Hub-Signature")  # GitHub's header name does not count here
    assert client.post("/bitbucket", content=body, headers=headers).status_code == 401


GENERIC_PR = {
    "repository": "acme/tool",
    "event": "pull_request",
    "commit_id": SHA,
    "changed_files": ["src/a.py"],
    "pull_request": {"number": 1, "action": "opened", "source_branch": "f", "destination_branch": "main"},
}


def test_generic_pull_request(client, airflow):
    body = json.dumps(GENERIC_PR).encode()
    headers = {"X-Delivery-Id": "gen-1", "X-Signature-256": sign(body, "gen-secret")}
    response = client.post("/generic", content=body, headers=headers)
    assert [s["dag_id"] for s in response.json()["started"]] == ["gen"]
    source = next(iter(airflow.runs.values()))["conf"]["source"]
    assert source["pull_request"]["action"] == "opened" and source["branch"] == "f"


def test_run_ids_are_valid_airflow_run_ids():
    import re

    run_id = runs.run_id_for("72d3162e-cc78-11e3-81ab-4c9367dc0958", "0123456789abcdef", 2)
    assert run_id == "webhook__72d3162e-cc78-11e3-81ab-4c9367dc0958__0123456789abcdef__2"
    assert re.fullmatch(r"[A-Za-z0-9_.~:+-]+", run_id)


# --- what an unauthenticated or hostile sender can do -----------------------------------------------------------


def make_client(airflow, store, pipelines, secrets) -> TestClient:
    return draining_client(
        Receiver(own_secret=secrets.get, airflow=airflow, load_pipelines=lambda: pipelines, store=store)
    )


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not even text",
        b"[" * 200_000,  # parsed first, this was a RecursionError (500)
        json.dumps({"repository": {"full_name": "acme/webapp"}, "ref": ["x"] * 1000}).encode(),
    ],
    ids=["not-json", "deep-array", "json"],
)
def test_an_unsigned_body_is_refused_before_it_is_read(client, airflow, body):
    response = github(client, None, raw=body, signature="sha256=" + "0" * 64)
    assert response.status_code == 401
    assert response.json() == {"error": "X-Hub-Signature-256 does not match"}
    assert airflow.runs == {}


def test_the_secret_that_signed_must_be_the_repositorys_own(airflow, store):
    pipelines = [spec("main-release", {"repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}})]
    client = make_client(airflow, store, pipelines, {None: "global", "acme/webapp": SECRET, "acme/idle": "idle"})
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    # The global secret signs for repositories without their own, not for acme/webapp.
    assert github(client, payload, secret="global").status_code == 401
    assert github(client, github_push_payload("acme/other", "main", SHA, []), secret="global").status_code == 200
    # A repository's own secret is known once a pipeline watches it: acme/idle's deliveries are refused until then.
    ping = {"zen": "Design for failure.", "repository": {"full_name": "acme/idle"}}
    assert github(client, ping, event="ping", secret="idle").status_code == 401
    pipelines.append(spec("idle", {"repository": "acme/idle", "push": {"branches": {"includes": ["main"]}}}))
    assert github(client, ping, event="ping", secret="idle").status_code == 200
    assert github(client, payload, delivery="d-ok").json()["started"][0]["dag_id"] == "main-release"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"repository": {"full_name": "acme/webapp"}, "ref": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    ],
    ids=["array", "inside-an-object"],
)
def test_a_signed_body_nested_too_deeply_is_400(client, airflow, body):
    response = github(client, None, raw=body)
    assert response.status_code == 400
    assert response.json() == {"error": "body is not valid JSON: arrays or objects nested too deeply"}
    assert airflow.runs == {}


def test_a_signed_payload_with_mistyped_fields_is_400_naming_the_field(client, airflow):
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    payload["head_commit"]["author"] = "Mona"  # was: AttributeError, a 500
    response = github(client, payload)
    assert response.status_code == 400
    assert response.json() == {
        "error": "head_commit.author: expected an object, got a string",
        "field": "head_commit.author",
    }
    assert airflow.runs == {}


def _paths(node, prefix=()):
    if prefix:
        yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*prefix, key))


FUZZ_PIPELINES = [
    spec(
        "gh",
        {
            "repository": "acme/webapp",
            "push": {"branches": {"includes": ["*"]}},
            "pull_request": {"branches": {"includes": ["*"]}},
            "from_forks": True,
        },
    ),
    spec(
        "bb",
        {
            "provider": "bitbucket",
            "repository": "acme/api",
            "push": {"branches": {"includes": ["*"]}},
            "pull_request": {"branches": {"includes": ["*"]}},
        },
    ),
    spec("gen", {"provider": "generic", "repository": "acme/tool", "pull_request": {"events": ["opened"]}}),
]


def test_no_signed_payload_takes_the_receiver_down(airflow, store):
    """Every field of a push and a pull request of each provider, replaced by a value of every JSON type: each
    delivery is answered (200, 202, or 400 naming the field); none raises."""
    from tests.unit.test_webhook_payloads import BITBUCKET_PR, BITBUCKET_PUSH, GITHUB_PR, GITHUB_PUSH

    receiver = Receiver(
        own_secret={None: SECRET}.get, airflow=airflow, load_pipelines=lambda: FUZZ_PIPELINES, store=store
    )
    receiver.starter.autostart = False
    cases = [
        ("github", "push", GITHUB_PUSH),
        ("github", "pull_request", GITHUB_PR),
        ("bitbucket", "repo:push", BITBUCKET_PUSH),
        ("bitbucket", "pullrequest:created", BITBUCKET_PR),
        ("generic", None, GENERIC_PR),
    ]
    from release_orchestrator.webhooks.app import PROVIDERS

    count, statuses = 0, set()
    for provider, event, payload in cases:
        for path in list(_paths(payload)):
            for value in ("x", 5, 1.5, [], {}, None, True, [{}], "\ud800"):
                body = copy.deepcopy(payload)
                node = body
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = value
                raw = json.dumps(body).encode()
                headers = {PROVIDERS[provider].signature_header: sign(raw, SECRET)}
                headers[PROVIDERS[provider].delivery_header] = f"fuzz-{count}"
                if event:
                    headers[PROVIDERS[provider].event_header] = event
                status, answer = receiver.handle(provider, headers, raw)
                count += 1
                statuses.add(status)
                assert status in (200, 202, 400), (provider, path, value, status, answer)
                if status == 400:
                    assert answer["field"] and answer["error"].startswith(answer["field"]), (path, value, answer)
                json.dumps(answer).encode()  # the answer can be sent: no lone surrogate in it
    assert count > 700 and statuses == {200, 202, 400}


def test_a_pull_request_from_a_fork_starts_nothing_unless_the_trigger_allows_forks(airflow, store):
    pipelines = [
        spec("pr-check", {"repository": "acme/webapp", "pull_request": {"branches": {"includes": ["main"]}}}),
        spec(
            "contrib",
            {"repository": "acme/webapp", "pull_request": {"branches": {"includes": ["main"]}}, "from_forks": True},
        ),
    ]
    client = make_client(airflow, store, pipelines, {"acme/webapp": SECRET})

    def pr(head_repository, delivery):
        head = {"ref": "patch-1", "sha": SHA, "repo": {"full_name": head_repository} if head_repository else None}
        payload = {
            "action": "opened",
            "repository": {"full_name": "acme/webapp"},
            "pull_request": {
                "number": 3,
                "head": head,
                "base": {"ref": "main", "repo": {"full_name": "acme/webapp"}},
            },
        }
        return github(client, payload, event="pull_request", delivery=delivery).json()

    fork = pr("mallory/webapp", "d-fork")
    assert [s["dag_id"] for s in fork["started"]] == ["contrib"]
    assert fork["not_started"] == [
        {
            "pipeline": "pr-check",
            "dag_id": "pr-check",
            "ref": "branch patch-1",
            "commit_id": SHA,
            "reason": "pull request from the fork mallory/webapp: triggers[0] does not say from_forks: true",
        }
    ]
    deleted = pr(None, "d-deleted")
    assert "pull request from a deleted fork" in deleted["not_started"][0]["reason"]
    own = pr("acme/webapp", "d-own")
    assert sorted(s["dag_id"] for s in own["started"]) == ["contrib", "pr-check"]
    source = airflow.runs[("contrib", own["started"][0]["run_id"])]["conf"]["source"]
    assert source["pull_request"]["from_fork"] is False
    assert sorted(dag for dag, _ in airflow.runs) == ["contrib", "contrib", "contrib", "pr-check"]


@pytest.mark.parametrize("why", ["paused", "no filter matched", "no pipeline watches it"])
def test_a_delivery_that_started_nothing_is_recorded_so_its_replay_starts_nothing(airflow, store, why):
    pipelines = list(PIPELINES)
    client = make_client(airflow, store, pipelines, {None: SECRET})
    branch = "dev" if why == "no filter matched" else "main"
    repository = "acme/nobody" if why == "no pipeline watches it" else "acme/webapp"
    payload = github_push_payload(repository, branch, SHA, ["a.py"])
    if why == "paused":
        airflow.paused.add("main-release")
    first = github(client, payload, delivery="d-20")
    assert first.status_code == 200 and first.json()["started"] == []
    assert store.get("d-20")["state"] == deliveries.DONE

    # Later the pipeline is unpaused, the filter or the trigger changes: the old delivery still starts nothing.
    airflow.paused.clear()
    pipelines.append(spec("later", {"repository": repository, "push": {"branches": {"includes": ["*"]}}}))
    again = github(client, payload, delivery="d-20")
    resent = github(client, payload, delivery="d-21")  # the same body under a new delivery id
    for answer in (again, resent):
        assert answer.status_code == 200
        assert answer.json()["duplicate"] is True and answer.json()["started"] == [] and answer.json()["runs"] == []
    assert airflow.runs == {}
    assert github(client, github_push_payload(repository, branch, "b" * 40, []), delivery="d-22").json()["started"]


def test_request_data_is_escaped_in_the_log(airflow, store, caplog):
    pipelines = [spec("main-release", {"repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}})]
    client = make_client(airflow, store, pipelines, {None: "global"})
    forged = "acme/x\n2026-01-01T00:00:00Z [info     ] github delivery d-1 for acme/webapp: starting [forged]"
    caplog.set_level("INFO", logger="release_orchestrator.webhooks")
    response = github(client, github_push_payload(forged, "main", SHA, ["a.py"]), secret="global")
    assert response.status_code == 200 and response.json()["repository"] == forged
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("release_orchestrator.webhooks")]
    assert any("acme/x\\n2026-01-01" in line for line in lines), lines
    assert not any("\n" in line for line in lines), lines


def test_the_body_limit_is_a_setting(receiver, monkeypatch):
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_WEBHOOK_MAX_BODY_BYTES", "50")
    client = TestClient(create_app(receiver))
    body = b'{"a": "' + b"x" * 100 + b'"}'
    response = client.post("/github", content=body, headers={"X-Hub-Signature-256": sign(body, SECRET)})
    assert response.status_code == 413
    assert response.json()["error"] == "body of 109 bytes is over the limit of 50 bytes"
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_WEBHOOK_MAX_BODY_BYTES", "lots")
    assert client.post("/github", content=body).json() == {"error": "the webhook receiver is misconfigured"}


def test_secrets_are_reused_for_their_cache_time_and_a_new_one_works_at_once(airflow, store):
    pipelines = [spec("main-release", {"repository": "acme/webapp", "push": {"branches": {"includes": ["main"]}}})]
    secrets, lookups, clock = {"acme/webapp": "first"}, [], [0.0]

    def own_secret(repository):
        lookups.append(repository)
        return secrets.get(repository)

    receiver = Receiver(own_secret=own_secret, airflow=airflow, load_pipelines=lambda: pipelines, store=store)
    receiver.secrets.ttl, receiver.secrets.clock = (lambda: 10.0), (lambda: clock[0])
    client = draining_client(receiver)
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    assert github(client, payload, delivery="d-1", secret="first").status_code == 200
    looked_up = len(lookups)
    assert github(client, payload | {"after": "b" * 40}, delivery="d-2", secret="first").status_code == 200
    assert len(lookups) == looked_up  # reused: no secrets-backend call for the second delivery

    # Replaced: the new secret works on the very next delivery (a refusal is checked again afresh) ...
    secrets["acme/webapp"] = "second"
    assert github(client, payload | {"after": "c" * 40}, delivery="d-3", secret="second").status_code == 200
    # ... and the old one, cached again by that fresh look-up, is refused at once as well.
    assert github(client, payload | {"after": "d" * 40}, delivery="d-4", secret="first").status_code == 401

    # A secret removed from the backend is still reused until the cache time ends, then refused.
    del secrets["acme/webapp"]
    assert github(client, payload | {"after": "e" * 40}, delivery="d-5", secret="second").status_code == 200
    clock[0] = 10.5
    assert github(client, payload | {"after": "f" * 40}, delivery="d-6", secret="second").status_code == 401


def test_an_unusable_secret_cache_setting_answers_500_and_starts_nothing(receiver, airflow, monkeypatch, caplog):
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_WEBHOOK_SECRET_CACHE_SECONDS", "forever")
    client = draining_client(receiver)
    response = github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"]))
    assert response.status_code == 500
    assert response.json() == {"error": "the webhook receiver is misconfigured"}
    assert airflow.runs == {}
    assert "RELEASE_ORCHESTRATOR_WEBHOOK_SECRET_CACHE_SECONDS='forever'" in caplog.text


@pytest.mark.parametrize("setting, thread", [("api-server", True), ("separate", False), ("elsewhere", True)])
def test_the_starter_runs_in_the_api_server_unless_the_setting_says_separate(receiver, monkeypatch, setting, thread):
    monkeypatch.setenv("RELEASE_ORCHESTRATOR_WEBHOOK_STARTER", setting)
    with TestClient(create_app(receiver)) as client:
        response = github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"]))
        assert response.status_code == 200
        alive = receiver.starter._thread is not None and receiver.starter._thread.is_alive()
    assert alive is thread  # an unusable value keeps runs being created here


def test_deliveries_arriving_together_are_recorded_in_one_batch_as_if_one_after_another(airflow, store):
    receiver = Receiver(own_secret={"acme/webapp": SECRET}.get, airflow=airflow, load_pipelines=lambda: PIPELINES)
    receiver.store, receiver.starter.autostart = store, False
    batches, release = [], threading.Event()
    record_batch = receiver.record_batch

    def slow_first_batch(items):
        batches.append([item[1] for item in items])
        if len(batches) == 1:
            release.wait(10)  # the others queue up meanwhile
        return record_batch(items)

    receiver.batches.run_batch = slow_first_batch
    payload = github_push_payload("acme/webapp", "main", SHA, ["a.py"])
    body = json.dumps(payload).encode()

    def deliver(delivery):
        headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sign(body, SECRET)}
        return receiver.handle("github", headers, body)

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(deliver, "d-first")
        while not batches:
            time.sleep(0.01)
        later = [pool.submit(deliver, f"d-{n}") for n in range(3)]
        while len(receiver.batches._queue) < 3:
            time.sleep(0.01)
        release.set()
        answers = [first.result(10)] + [f.result(10) for f in later]
    assert batches[0] == ["d-first"] and sorted(batches[1]) == ["d-0", "d-1", "d-2"]
    # One body under four delivery ids: the first started the runs, the rest are replays of it, in one batch too.
    assert [status for status, _ in answers] == [200] * 4
    assert answers[0][1]["duplicate"] is False and [a[1]["duplicate"] for a in answers[1:]] == [True] * 3
    assert all(
        a[1]["runs"] == [{"dag_id": e["dag_id"], "run_id": e["run_id"]} for e in answers[0][1]["started"]]
        for a in answers[1:]
    )


def test_a_failing_batch_answers_500_to_every_delivery_in_it_and_records_none(receiver, airflow, store):
    def broken_record_many(items, attempt=1):
        raise RuntimeError("connection reset")

    store.record_many = broken_record_many
    client = draining_client(receiver)
    response = github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"]))
    assert response.status_code == 500
    assert response.json() == {"error": "the delivery could not be recorded: connection reset"}
    assert airflow.runs == {}


def test_a_starter_of_its_own_polls_creates_the_runs_and_beats_until_stopped(airflow, store, tmp_path):
    start = {"dag_id": "main-release", "run_id": "webhook__d-1__x", "conf": {}, "note": "n", "user": "github-webhook"}
    starter = deliveries.Starter(store, airflow, poll_seconds=0.05, autostart=False)
    beats = []
    starter.heartbeat = lambda: beats.append(time.monotonic())
    loop = threading.Thread(target=starter.run)
    loop.start()
    try:
        store.record("d-1", "x", "github", [start])  # nothing wakes it: it finds the delivery by polling
        deadline = time.monotonic() + 10
        # The run is created, then the delivery marked done: wait for the second.
        while store.get("d-1")["state"] != deliveries.DONE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.get("d-1")["state"] == deliveries.DONE
        assert ("main-release", "webhook__d-1__x") in airflow.runs
        assert len(beats) >= 2
    finally:
        starter.stop(timeout=0)
        loop.join(5)
    assert not loop.is_alive()


@pytest.mark.parametrize("args", [["--poll-seconds", "0"], ["--nice", "20"]])
def test_the_starter_command_refuses_bad_arguments(args, capsys):
    from release_orchestrator.webhooks import starter

    with pytest.raises(SystemExit) as exit_:
        starter.main(args)
    assert exit_.value.code == 2
    assert args[0] in capsys.readouterr().err
