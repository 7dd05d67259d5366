"""The webhook receiver: POST /github, /bitbucket and /generic (under /release-webhooks in the api-server).

Plugin apps are not behind Airflow's authentication, so the HMAC signature is the gate, and nothing a sender
wrote is parsed before it holds. A delivery goes: size limit (413, read in chunks, so an over-size body is never
held whole) -> signature header present and well-formed (401) -> signature of the raw bytes valid with a secret
that may sign on this endpoint (401; signatures.candidate_secrets) -> JSON (400, too deep included) -> the
secret is the one of the repository the body names (401) -> event known (ping 200, others 202) -> delivery id
(400) -> fields, type-checked (400) -> filters of every pipeline, forks refused unless allowed -> delivery
recorded, whatever it started, unless it is a replay (200, duplicate) -> answer (200) -> runs created by the
starter thread (deliveries.py).

What a sender wrote reaches the log through logtext() only.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from release_orchestrator import settings
from release_orchestrator.webhooks import deliveries, filters, payloads, runs, signatures
from release_orchestrator.webhooks.logtext import logtext

log = logging.getLogger(__name__)


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


class SecretMismatch(Reject):
    """No secret that may sign this delivery did (401); worth asking the secrets backends afresh once."""


async def read_body(request: Request, limit: int) -> bytearray:
    """The raw body, refusing (413) anything over `limit` without reading more than that."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Reject(400, "Content-Length must be a number of bytes")
        if int(length) > limit:
            raise Reject(413, f"body of {int(length)} bytes is over the limit of {limit} bytes")
    body = bytearray()  # grown in place: the body is held once, not as chunks and then joined
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:  # a missing or understated Content-Length
            raise Reject(413, f"body is over the limit of {limit} bytes")
        body += chunk
    return body


class Receiver:
    """Everything after the body is read; synchronous, since the secret lookup and runs go to the metadata DB."""

    def __init__(
        self,
        own_secret: Callable[[str | None], str | None] = signatures.own_secret,
        airflow: Any = None,
        load_pipelines: Callable[[], list] = runs.load_pipelines,
        store: deliveries.DeliveryStore | None = None,
        secret_ttl: Callable[[], float] | None = None,
    ):
        # A repository's own secret (for None, the global one), reused for WEBHOOK_SECRET_CACHE_SECONDS.
        self.secrets = signatures.SecretCache(own_secret, ttl=secret_ttl)
        self.airflow = airflow or runs.AirflowRuns()
        self.load_pipelines = load_pipelines
        self.store = store or deliveries.DeliveryStore()
        self.starter = deliveries.Starter(self.store, self.airflow)
        self.batches = deliveries.GroupCommit(self.record_batch)

    def handle(self, provider_name: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        provider = PROVIDERS[provider_name]
        headers = {k.lower(): v for k, v in headers.items()}
        try:
            try:
                return self._handle(provider, headers, body, fresh=False)
            except SecretMismatch:  # maybe a secret set or replaced since it was looked up: never refuse on reuse
                return self._handle(provider, headers, body, fresh=True)
        except Reject as reject:
            log.info("%s webhook refused (%s): %s", provider.name, reject.status, logtext(reject.body["error"], 1000))
            return reject.status, reject.body

    def _handle(self, provider: Provider, headers: dict[str, str], body: bytes, fresh: bool) -> tuple[int, dict]:
        try:
            given = signatures.parse_signature(
                headers.get(provider.signature_header.lower()), provider.signature_header
            )
        except signatures.SignatureError as err:
            raise Reject(401, str(err)) from None
        pipelines = [(pipeline, filters.parse_triggers(pipeline)[0]) for pipeline in self.load_pipelines()]
        looked_up: dict[str | None, str | None] = {}

        def own_secret(repository: str | None) -> str | None:  # each name looked up once per delivery
            key = repository.lower() if repository else None
            if key not in looked_up:
                looked_up[key] = self.secrets.get(repository, fresh=fresh)
            return looked_up[key]

        # The repository is in the body, which is not read before it is authenticated: so the raw bytes are
        # checked against every secret that may sign on this endpoint, the global one first.
        watched = sorted({t.repository.lower() for _, ts in pipelines for t in ts if t.provider == provider.name})
        secret = signatures.matching_secret(body, given, signatures.candidate_secrets(own_secret, watched))
        if secret is None:
            if fresh:  # logged once: a refusal with reused secrets is always checked again afresh
                names = [signatures.GLOBAL_SECRET_VARIABLE] + [n for r in watched for n in signatures.secret_names(r)]
                log.info("%s webhook: no secret of %s signed the delivery", provider.name, ", ".join(names))
            raise SecretMismatch(401, f"{provider.signature_header} does not match")

        data = self.parse_json(body)
        try:
            repository = payloads.repository_of(provider.name, data)
        except payloads.PayloadError as err:
            raise Reject(400, str(err), field=err.field) from None
        # The secret that signed must be the one of the repository the body names: another repository's, or the
        # global one where the repository has its own, signs nothing for it.
        expected = own_secret(repository) or own_secret(None)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            if fresh:
                log.info(
                    "%s webhook: signed, but not with the secret of %s (%s)",
                    provider.name,
                    logtext(repository),
                    ", ".join([*signatures.secret_names(repository), signatures.GLOBAL_SECRET_VARIABLE]),
                )
            raise SecretMismatch(401, f"{provider.signature_header} does not match")

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
            raise Reject(
                400,
                f"{provider.delivery_header}: must be 1-100 letters, digits or _ . ~ : + - (without '__' or '..')",
                field=provider.delivery_header,
            )
        try:
            events = payloads.parse_events(provider.name, kind, event_name, data, delivery_id)
        except payloads.Ignored as ignored:
            return 202, {"ignored": True, "reason": str(ignored), "delivery_id": delivery_id}
        except payloads.PayloadError as err:
            raise Reject(400, str(err), field=err.field) from None
        return self.dispatch(provider, delivery_id, runs.body_digest(body), events, pipelines)

    def record_batch(self, items: list[tuple[str, str, str, list]]) -> list:
        """For each (provider, delivery id, digest, outcomes): (blockers, Recorded), or the Reject to answer with.

        Whether the pipelines can start is read once for the batch, and the deliveries are recorded in one
        transaction: a few round trips to the metadata DB for many deliveries instead of several for each."""
        names = logtext(", ".join(f"{provider} {delivery_id}" for provider, delivery_id, _, _ in items), 2000)
        matched = sorted({start["dag_id"] for *_, outcomes in items for _, start, _ in outcomes if start})
        try:
            blockers = self.airflow.blockers(matched) if matched else {}
        except Exception as err:  # noqa: BLE001 - the metadata DB is away: the sender delivers again later
            log.exception("deliveries %s: could not read the pipelines' DAGs", names)
            return [Reject(500, f"could not check the pipelines' DAGs: {err}") for _ in items]
        records = [
            (delivery_id, digest, provider, [s for _, s, _ in outcomes if s and s["dag_id"] not in blockers])
            for provider, delivery_id, digest, outcomes in items
        ]
        try:
            recorded = self.store.record_many(records)
        except Exception as err:  # noqa: BLE001 - nothing recorded, nothing started: a redelivery is safe
            log.exception("deliveries %s could not be recorded", names)
            return [Reject(500, f"the delivery could not be recorded: {err}") for _ in items]
        return [(blockers, one) for one in recorded]

    @staticmethod
    def parse_json(body: bytes) -> dict:
        try:
            data = json.loads(body)
        except RecursionError:  # a 200,000-deep array: the parser's own guard, answered like any bad JSON
            raise Reject(400, "body is not valid JSON: arrays or objects nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as err:
            raise Reject(400, f"body is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise Reject(400, "body must be a JSON object")
        return data

    def dispatch(
        self,
        provider: Provider,
        delivery_id: str,
        digest: str,
        events: list[payloads.Event],
        pipelines: list[tuple[Any, list[filters.Trigger]]],
    ) -> tuple[int, dict]:
        response: dict[str, Any] = {
            "delivery_id": delivery_id,
            "event": events[0].source["event"],
            "repository": events[0].source["repository"],
            "duplicate": False,
            "started": [],
            "not_started": [],
        }
        outcomes = []  # (entry, start or None, reason not started or None), in pipeline order
        for index, event in enumerate(events):
            ref = f"tag {event.source['tag']}" if event.source.get("tag") else f"branch {event.source.get('branch')}"
            for pipeline, triggers in pipelines:
                result = filters.match(triggers, event.source, event.files_known)
                if result is None:
                    continue  # the pipeline does not watch this repository
                dag_id = runs.dag_id_of(pipeline)
                entry = {
                    "pipeline": pipeline.name,
                    "dag_id": dag_id,
                    "ref": ref,
                    "commit_id": event.source["commit_id"],
                }
                if not result.matched:
                    outcomes.append((entry, None, result.reason))
                    continue
                run_id = runs.run_id_for(delivery_id, digest, index)
                start = {
                    "dag_id": dag_id,
                    "run_id": run_id,
                    "conf": {"source": event.source},
                    "note": _note(event.source),
                    "user": f"{provider.name}-webhook",
                }
                outcomes.append(({**entry, "run_id": run_id, "matched_by": result.by}, start, None))

        # Recorded before the answer, so an accepted delivery is never lost; the runs are created right after it.
        # Deliveries arriving together are checked and recorded together (record_batch).
        blockers, recorded = self.batches.submit((provider.name, delivery_id, digest, outcomes))
        starts = []
        for entry, start, reason in outcomes:
            if start and start["dag_id"] not in blockers:
                response["started"].append(entry)
                starts.append(start)
                continue
            entry = {key: value for key, value in entry.items() if key not in ("run_id", "matched_by")}
            response["not_started"].append({**entry, "reason": reason or blockers[start["dag_id"]]})
        if recorded.outcome == "duplicate":
            log.info(
                "%s delivery %s is a replay of runs %s", provider.name, logtext(delivery_id), logtext(recorded.runs)
            )
            return 200, {**response, "duplicate": True, "started": [], "runs": recorded.runs}
        if starts:
            self.starter.wake()
        log.info(
            "%s delivery %s for %s: %s %s",
            provider.name,
            logtext(delivery_id),
            logtext(response["repository"]),
            "starting again" if recorded.outcome == "requeued" else "starting",
            logtext([(s["dag_id"], s["run_id"]) for s in starts] or "nothing", 2000),
        )
        return 200, response


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


def create_app(receiver: Receiver | None = None, max_body_bytes: int | None = None) -> FastAPI:
    """The webhook app; the body limit is the WEBHOOK_MAX_BODY_BYTES setting, read per request, unless given."""
    receiver = receiver or Receiver()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # The api-server enters its plugin apps' lifespans: the starter runs as long as the server does, and
        # its first round creates the runs of deliveries recorded before a restart. Unless it runs apart.
        try:
            separate = settings.WEBHOOK_STARTER.get() == "separate"
        except settings.SettingError:  # the runs are still created, here; the log says why
            log.exception("webhook receiver: WEBHOOK_STARTER cannot be used; runs are created in this process")
            separate = False
        if not separate:
            receiver.starter.start()
            receiver.starter.wake()
        else:  # a starter process of its own creates the runs (webhooks/starter.py)
            receiver.starter.autostart = False
            log.info("webhook receiver: runs are created by a separate starter process (WEBHOOK_STARTER)")
        try:
            yield
        finally:
            receiver.starter.stop()

    app = FastAPI(
        title="Release orchestrator webhooks", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )

    async def receive(provider: str, request: Request) -> JSONResponse:
        try:
            limit = max_body_bytes or settings.WEBHOOK_MAX_BODY_BYTES.get()
        except settings.SettingError:
            log.exception("webhook receiver: the body limit setting cannot be used")
            return JSONResponse({"error": "the webhook receiver is misconfigured"}, status_code=500)
        try:
            body = await read_body(request, limit)
        except Reject as reject:
            return JSONResponse(reject.body, status_code=reject.status)
        try:
            status, content = await run_in_threadpool(receiver.handle, provider, dict(request.headers), body)
        except settings.SettingError:  # e.g. WEBHOOK_SECRET_CACHE_SECONDS: the sender delivers again later
            log.exception("webhook receiver: a setting cannot be used")
            return JSONResponse({"error": "the webhook receiver is misconfigured"}, status_code=500)
        return JSONResponse(content, status_code=status)

    @app.get("/health")
    def health() -> JSONResponse:
        """Up, and the deliveries still waiting for their runs (a backlog that grows means the starter is stuck)."""
        endpoints = [f"/{name}" for name in PROVIDERS]
        try:
            backlog = receiver.store.backlog()
        except Exception:  # noqa: BLE001 - the answer is the report
            # The details (host, SQL) go to the log only: this endpoint answers anyone.
            log.exception("webhook health: the delivery record in the metadata DB cannot be read")
            content = {"status": "error", "error": "the metadata DB cannot be read", "endpoints": endpoints}
            return JSONResponse(content, status_code=503)
        return JSONResponse({"status": "ok", "endpoints": endpoints, "deliveries": backlog})

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
