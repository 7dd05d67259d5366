"""The webhook receiver: POST /github, /bitbucket and /generic (under /release-webhooks in the api-server).

Plugin apps are not behind Airflow's authentication, so the HMAC signature is the gate. A delivery goes:
size limit (413) -> signature header present and well-formed (401) -> JSON (400) -> signature valid with the
repository's secret (401) -> event known (ping 200, others 202) -> delivery id (400) -> fields (400) ->
replay check (200, duplicate) -> filters of every pipeline -> runs started (200).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from release_orchestrator.webhooks import filters, payloads, runs, signatures

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub's own cap on payloads


@dataclass(frozen=True)
class Provider:
    name: str
    signature_header: str
    delivery_header: str
    event_header: str | None  # generic deliveries name their event in the body


PROVIDERS = {
    "github": Provider("github", "X-Hub-Signature-256", "X-GitHub-Delivery", "X-GitHub-Event"),
    "bitbucket": Provider("bitbucket", "X-Hub-Signature", "X-Request-UUID", "X-Event-Key"),
    "generic": Provider("generic", "X-Signature-256", "X-Delivery-Id", None),
}


class Reject(Exception):
    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.body = status, {"error": message, **extra}


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing (413) anything over `limit` without reading more than that."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Reject(400, "Content-Length must be a number of bytes")
        if int(length) > limit:
            raise Reject(413, f"body of {int(length)} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a missing or understated Content-Length
            raise Reject(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Receiver:
    """Everything after the body is read; synchronous, since the secret lookup and runs go to the metadata DB."""

    def __init__(self, find_secret: Callable[[str | None], str | None] = signatures.find_secret,
                 airflow: Any = None, load_pipelines: Callable[[], list] = runs.load_pipelines):
        self.find_secret = find_secret
        self.airflow = airflow or runs.AirflowRuns()
        self.load_pipelines = load_pipelines

    def handle(self, provider_name: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        provider = PROVIDERS[provider_name]
        headers = {k.lower(): v for k, v in headers.items()}
        try:
            return self._handle(provider, headers, body)
        except Reject as reject:
            log.info("%s webhook refused (%s): %s", provider.name, reject.status, reject.body["error"])
            return reject.status, reject.body

    def _handle(self, provider: Provider, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        signature = headers.get(provider.signature_header.lower())
        try:
            signatures.parse_signature(signature, provider.signature_header)
        except signatures.SignatureError as err:
            raise Reject(401, str(err)) from None
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise Reject(400, f"body is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise Reject(400, "body must be a JSON object")
        try:
            repository = payloads.repository_of(provider.name, data)
        except payloads.PayloadError as err:
            raise Reject(400, str(err), field=err.field) from None
        try:
            signatures.check_signature(body, signature, provider.signature_header, self.find_secret(repository))
        except signatures.SignatureError as err:
            raise Reject(401, str(err)) from None

        event_name = headers.get(provider.event_header.lower()) if provider.event_header else None
        try:
            kind = payloads.event_kind(provider.name, event_name, data)
        except payloads.Ignored as ignored:
            return 202, {"ignored": True, "reason": str(ignored)}
        except payloads.PayloadError as err:
            raise Reject(400, str(err), field=err.field) from None
        if kind == payloads.PING:
            return 200, {"ok": True, "event": "ping"}

        delivery_id = (headers.get(provider.delivery_header.lower()) or "").strip().strip("{}")
        if not delivery_id:
            raise Reject(400, f"{provider.delivery_header}: missing header", field=provider.delivery_header)
        if not runs.valid_delivery_id(delivery_id):
            raise Reject(400, f"{provider.delivery_header}: must be 1-100 letters, digits or _ . ~ : + - "
                              f"(without '__' or '..')", field=provider.delivery_header)
        try:
            events = payloads.parse_events(provider.name, kind, event_name, data, delivery_id)
        except payloads.Ignored as ignored:
            return 202, {"ignored": True, "reason": str(ignored), "delivery_id": delivery_id}
        except payloads.PayloadError as err:
            raise Reject(400, str(err), field=err.field) from None
        return self.dispatch(provider, delivery_id, runs.body_digest(body), events)

    def dispatch(self, provider: Provider, delivery_id: str, digest: str,
                 events: list[payloads.Event]) -> tuple[int, dict]:
        response: dict[str, Any] = {
            "delivery_id": delivery_id, "event": events[0].source["event"],
            "repository": events[0].source["repository"], "duplicate": False, "started": [], "not_started": [],
        }
        seen = self.airflow.existing(delivery_id, digest)
        own_prefix = runs.run_id_for(delivery_id, digest)
        if any(not run["run_id"].startswith(own_prefix) for run in seen):
            # The same body under another delivery id: a replay, whatever this one claims to be.
            log.info("%s delivery %s is a replay of runs %s", provider.name, delivery_id, seen)
            return 200, {**response, "duplicate": True, "runs": seen}
        # A redelivery of this very delivery goes on: the run ids are the same, so pipelines it already
        # started collide in the DB (AlreadyStarted), and those that failed to start last time start now.

        errors = 0
        pipelines = self.load_pipelines()
        for index, event in enumerate(events):
            ref = f"tag {event.source['tag']}" if event.source.get("tag") else f"branch {event.source.get('branch')}"
            for pipeline in pipelines:
                triggers, _ = filters.parse_triggers(pipeline)
                result = filters.match(triggers, event.source, event.files_known)
                if result is None:
                    continue  # the pipeline does not watch this repository
                dag_id = runs.dag_id_of(pipeline)
                entry = {"pipeline": pipeline.name, "dag_id": dag_id, "ref": ref,
                         "commit_id": event.source["commit_id"]}
                if not result.matched:
                    reason = "no filter matched: " + "; ".join(result.reasons)
                    response["not_started"].append({**entry, "reason": reason})
                    continue
                blocker = self.airflow.blocker(dag_id)
                if blocker:
                    response["not_started"].append({**entry, "reason": blocker})
                    continue
                run_id = runs.run_id_for(delivery_id, digest, index)
                try:
                    self.airflow.start(dag_id, run_id, {"source": event.source}, note=_note(event.source),
                                       user=f"{provider.name}-webhook")
                except runs.AlreadyStarted:
                    response["not_started"].append({**entry, "reason": f"already started as {run_id}"})
                    continue
                except Exception as err:  # noqa: BLE001 - reported per pipeline; the others still start
                    log.exception("could not start %s for delivery %s", dag_id, delivery_id)
                    errors += 1
                    response["not_started"].append({**entry, "reason": f"could not start: {err}"})
                    continue
                response["started"].append({**entry, "run_id": run_id, "matched_by": result.by})
        if seen and not response["started"] and not errors:
            log.info("%s delivery %s is a replay of runs %s", provider.name, delivery_id, seen)
            return 200, {**response, "duplicate": True, "runs": seen}
        log.info("%s delivery %s for %s: started %s", provider.name, delivery_id, response["repository"],
                 [(s["dag_id"], s["run_id"]) for s in response["started"]] or "nothing")
        # Something failed to start: a 5xx lets the sender redeliver, and the redelivery starts only what is missing.
        return (500 if errors else 200), response


def _note(source: dict) -> str:
    """The run's note in the UI: what started it."""
    pr = source.get("pull_request")
    if pr:
        what = f"pull request #{pr.get('number')} {pr['action']}"
    elif source.get("tag"):
        what = f"tag {source['tag']}"
    else:
        what = f"push to {source.get('branch')}"
    return f"Started by {source['provider']} webhook: {source['repository']} {what} ({source['commit_id'][:12]})"


def create_app(receiver: Receiver | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    receiver = receiver or Receiver()
    app = FastAPI(title="Release orchestrator webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    async def receive(provider: str, request: Request) -> JSONResponse:
        try:
            body = await read_body(request, max_body_bytes)
        except Reject as reject:
            return JSONResponse(reject.body, status_code=reject.status)
        status, content = await run_in_threadpool(receiver.handle, provider, dict(request.headers), body)
        return JSONResponse(content, status_code=status)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "endpoints": [f"/{name}" for name in PROVIDERS]}

    @app.post("/github")
    async def github(request: Request) -> JSONResponse:
        return await receive("github", request)

    @app.post("/bitbucket")
    async def bitbucket(request: Request) -> JSONResponse:
        return await receive("bitbucket", request)

    @app.post("/generic")
    async def generic(request: Request) -> JSONResponse:
        return await receive("generic", request)

    return app
