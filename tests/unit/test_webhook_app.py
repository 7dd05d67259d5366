"""The webhook app in-process: status codes, responses, run ids and replays, with Airflow replaced by a fake."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from include.localenv.webhook_client import github_push_payload, sign
from release_orchestrator.pipeline.model import Pipeline
from release_orchestrator.webhooks import runs
from release_orchestrator.webhooks.app import Receiver, create_app

SECRET = "s3cret"
SHA = "a" * 40


class FakeAirflow:
    def __init__(self):
        self.runs: dict[tuple[str, str], dict] = {}
        self.paused: set[str] = set()
        self.failing: set[str] = set()

    def existing(self, delivery_id, digest):
        return [{"dag_id": d, "run_id": r} for d, r in sorted(self.runs)
                if r.startswith(f"webhook__{delivery_id}__") or f"__{digest}" in r]

    def blocker(self, dag_id):
        return "the pipeline is paused" if dag_id in self.paused else None

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
    spec("docs-site", {"repository": "acme/webapp",
                       "push": {"branches": {"includes": ["main"]}, "file_paths": {"includes": ["docs/**"]}}}),
    spec("tagged", {"repository": "acme/webapp", "push": {"tags": {"includes": ["v*"]}}}),
    spec("unrelated", {"repository": "acme/other", "push": {"branches": {"includes": ["main"]}}}),
    spec("bb", {"provider": "bitbucket", "repository": "acme/api", "push": {"branches": {"includes": ["main"]}}}),
    spec("gen", {"provider": "generic", "repository": "acme/tool",
                 "pull_request": {"events": ["opened"], "file_paths": {"includes": ["src/**"]}}}),
]


@pytest.fixture
def airflow():
    return FakeAirflow()


@pytest.fixture
def receiver(airflow):
    secrets = {"acme/webapp": SECRET, "acme/api": "bb-secret", "acme/tool": "gen-secret"}
    return Receiver(find_secret=secrets.get, airflow=airflow, load_pipelines=lambda: PIPELINES)


@pytest.fixture
def client(receiver):
    return TestClient(create_app(receiver))


def github(client, payload, event="push", delivery="d-1", secret=SECRET, signature=None, raw=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": signature if signature is not None else sign(body, secret)}
    return client.post("/github", content=body, headers=headers)


def test_health(client):
    assert client.get("/health").json()["status"] == "ok"


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
        ("tagged", "no filter matched: triggers[0].push: a branch push, and this filter is for tags")]
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


def test_partial_failure_is_500_and_a_redelivery_starts_only_what_is_missing(client, airflow):
    payload = github_push_payload("acme/webapp", "main", SHA, ["docs/index.md"])  # main-release and docs-site
    airflow.failing.add("docs-site")
    first = github(client, payload, delivery="d-9")
    assert first.status_code == 500
    assert [s["dag_id"] for s in first.json()["started"]] == ["main-release"]
    airflow.failing.clear()
    again = github(client, payload, delivery="d-9")
    assert again.status_code == 200 and again.json()["duplicate"] is False
    assert [s["dag_id"] for s in again.json()["started"]] == ["docs-site"]
    assert [(n["dag_id"], n["reason"]) for n in again.json()["not_started"] if n["dag_id"] != "tagged"] == [
        ("main-release", f"already started as {first.json()['started'][0]['run_id']}")]
    assert sorted(dag for dag, _ in airflow.runs) == ["docs-site", "main-release"]


def test_failure_to_start_is_500(client, airflow):
    airflow.failing.add("main-release")
    response = github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"]))
    assert response.status_code == 500
    assert "could not start: database is locked" in response.json()["not_started"][0]["reason"]
    # Redelivery (same id) works once the problem is gone: nothing was recorded as started.
    airflow.failing.clear()
    response = github(client, github_push_payload("acme/webapp", "main", SHA, ["a.py"]))
    assert response.status_code == 200 and response.json()["started"]


@pytest.mark.parametrize("signature,message", [
    ("", "missing X-Hub-Signature-256 header"),
    ("sha256=" + "0" * 64, "X-Hub-Signature-256 does not match"),
    ("sha1=" + "0" * 40, "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
    ("sha256=xyz", "X-Hub-Signature-256 must be 'sha256=' followed by 64 hex digits"),
])
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
    assert response.json() == {"ignored": True, "reason": "github event 'issues' starts nothing "
                                                          "(push and pull request events do)"}
    ping = github(client, {"zen": "Keep it logically awesome.", "repository": {"full_name": "acme/webapp"}},
                  event="ping")
    assert ping.status_code == 200 and ping.json()["event"] == "ping"
    assert airflow.runs == {}


def test_unknown_event_with_a_bad_signature_is_still_401(client):
    response = github(client, {"repository": {"full_name": "acme/webapp"}}, event="issues",
                      signature="sha256=" + "1" * 64)
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
    payload = {"repository": {"full_name": "acme/api"}, "push": {"changes": [
        {"new": {"type": "branch", "name": "main", "target": {"hash": SHA, "message": "m"}}}]}}
    body = json.dumps(payload).encode()
    headers = {"X-Event-Key": "repo:push", "X-Request-UUID": "{9a1b-22}", "X-Hub-Signature": sign(body, "bb-secret")}
    response = client.post("/bitbucket", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert [(s["dag_id"], s["run_id"]) for s in response.json()["started"]] == [
        ("bb", f"webhook__9a1b-22__{runs.body_digest(body)}")]
    headers["X-Hub-Signature-256"] = headers.pop("X-Hub-Signature")  # GitHub's header name does not count here
    assert client.post("/bitbucket", content=body, headers=headers).status_code == 401


def test_generic_pull_request(client, airflow):
    payload = {"repository": "acme/tool", "event": "pull_request", "commit_id": SHA, "changed_files": ["src/a.py"],
               "pull_request": {"number": 1, "action": "opened", "source_branch": "f", "destination_branch": "main"}}
    body = json.dumps(payload).encode()
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
