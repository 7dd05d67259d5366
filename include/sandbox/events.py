"""Source change events in the sandbox: what AWS puts on EventBridge when code, images or objects change.

- S3: moto itself sends "Object Created" events to EventBridge for buckets with EventBridge notifications
  on (the seed switches them on for the artifact bucket).
- ECR: moto sends nothing; after a successful PutImage the sandbox puts an "ECR Image Action" event
  (PUSH, SUCCESS, repository, digest, tag) on the default event bus, as ECR does.
- CodeCommit: moto's CodeCommit has repositories but no git, so a push is a control endpoint: it commits
  `files` to the sandbox's git store (served by include/sandbox/codecommit.py) and puts a "CodeCommit
  Repository State Change" event on the bus:

      POST /_sandbox/codecommit/push {"repository": "webapp", "branch": "main", "files": {"path": "text"},
                                      "message": "...", "author": "...", "commitId": "<40 hex, optional>",
                                      "region": "us-east-1 (optional)", "delete": false}
      -> 200 {"eventId", "event": "referenceCreated|referenceUpdated|referenceDeleted", "commitId", "oldCommitId"}
      -> 404 when moto has no such repository, 400 for a malformed body

Events reach EventBridge rules as on AWS (moto matches their patterns); the seed creates the queue the
release orchestrator reads by default and a rule routing all three kinds of event to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from include.sandbox.common import backend, region_of
from include.sandbox.common import client as sandbox_client
from include.sandbox.resources import ACCOUNT_ID, ARTIFACT_BUCKET, REGION

# The queue the release orchestrator's event-driven triggers read when a spec names none
# (release_orchestrator.events.sources.DEFAULT_QUEUE).
SOURCE_EVENTS_QUEUE = "release-source-events"
SOURCE_EVENTS_RULE = "sandbox-release-source-events"
SOURCE_EVENT_PATTERN = {
    "source": ["aws.s3", "aws.ecr", "aws.codecommit"],
    "detail-type": ["Object Created", "ECR Image Action", "CodeCommit Repository State Change"],
}
ECR_PUT_IMAGE = "AmazonEC2ContainerRegistry_V20150921.PutImage"
CODECOMMIT_PUSH_PATH = "/_sandbox/codecommit/push"
SHA_RE = re.compile(r"[0-9a-f]{40}")


def seed_events(endpoint_url: str, client: Callable[..., Any] | None = None) -> str:
    """The default source-events queue, a rule sending S3/ECR/CodeCommit changes to it, and EventBridge
    notifications on the artifact bucket. Idempotent; returns the queue URL."""
    client = client or sandbox_client
    sqs, events, s3 = client("sqs", endpoint_url), client("events", endpoint_url), client("s3", endpoint_url)
    url = sqs.create_queue(QueueName=SOURCE_EVENTS_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=SOURCE_EVENTS_RULE, EventPattern=json.dumps(SOURCE_EVENT_PATTERN), State="ENABLED")
    events.put_targets(Rule=SOURCE_EVENTS_RULE, Targets=[{"Id": "release-source-events", "Arn": arn}])
    config = s3.get_bucket_notification_configuration(Bucket=ARTIFACT_BUCKET)
    config.pop("ResponseMetadata", None)
    if "EventBridgeConfiguration" not in config:
        config["EventBridgeConfiguration"] = {}
        s3.put_bucket_notification_configuration(Bucket=ARTIFACT_BUCKET, NotificationConfiguration=config)
    return url


def intercept(app, environ: dict, start_response):
    """The sandbox app's hook: answers ECR PutImage (then emits its event) and the CodeCommit push
    endpoint; returns None for every other request."""
    if environ.get("HTTP_X_AMZ_TARGET") == ECR_PUT_IMAGE:
        return _put_image(app, environ, start_response)
    if environ.get("PATH_INFO", "").rstrip("/") == CODECOMMIT_PUSH_PATH:
        return _codecommit_push(app, environ, start_response)
    return None


def put_event(region: str, source: str, detail_type: str, detail: dict, resources: list[str] | None = None) -> str:
    """Put one event on the region's default event bus, as the AWS service would; returns its id."""
    entries = backend("events", region).put_events(
        [
            {
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "Resources": resources or [],
            }
        ]
    )
    return entries[0].get("EventId", "")


def _put_image(app, environ: dict, start_response):
    captured: dict[str, Any] = {}

    def capture(status, headers, exc_info=None):
        captured.update(status=status, headers=headers)
        return lambda data: None

    body = app._moto(environ, capture)[0]
    start_response(captured["status"], captured["headers"])
    if captured["status"].startswith("200"):
        image = json.loads(body).get("image", {})
        image_id = image.get("imageId", {})
        if image_id.get("imageDigest"):
            detail = {
                "result": "SUCCESS",
                "repository-name": image.get("repositoryName"),
                "image-digest": image_id["imageDigest"],
                "action-type": "PUSH",
            }
            if image_id.get("imageTag"):
                detail["image-tag"] = image_id["imageTag"]
            put_event(region_of(environ), "aws.ecr", "ECR Image Action", detail)
    return [body]


def _codecommit_push(app, environ: dict, start_response):
    if environ.get("REQUEST_METHOD") != "POST":
        return _json(start_response, 405, {"error": "use POST"})
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(length) or b"{}")
        if not isinstance(request, dict):
            raise ValueError("expected a JSON object")
    except ValueError as err:
        return _json(start_response, 400, {"error": f"body: {err}"})
    repository, branch = request.get("repository"), request.get("branch")
    region = request.get("region") or REGION
    commit = request.get("commitId")
    files = request.get("files") or {}
    if not isinstance(repository, str) or not isinstance(branch, str) or not repository or not branch:
        return _json(start_response, 400, {"error": "repository and branch are required strings"})
    if commit is not None and not SHA_RE.fullmatch(str(commit)):
        return _json(start_response, 400, {"error": "commitId must be 40 lowercase hex digits"})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return _json(start_response, 400, {"error": "files must map paths to text"})
    repositories = backend("codecommit", region).repositories
    if repository not in repositories:
        return _json(start_response, 404, {"error": f"no CodeCommit repository {repository!r} in {region}"})
    metadata = repositories[repository].repository_metadata
    store, key = app.codecommit, app.codecommit.key(region, repository)
    with store.lock:
        old = store.head(key, branch)
        if request.get("delete"):
            store.delete_branch(key, branch)
            event, commit = "referenceDeleted", old or commit or "0" * 40
        else:
            message = str(request.get("message") or "Change")
            pushed = store.push(key, branch, files, message, str(request.get("author") or "Demo Author"), sha=commit)
            commit = pushed["sha"]
            event = "referenceUpdated" if old else "referenceCreated"
    detail = {
        "callerUserArn": f"arn:aws:iam::{ACCOUNT_ID}:user/sandbox",
        "commitId": commit,
        "event": event,
        "referenceFullName": f"refs/heads/{branch}",
        "referenceName": branch,
        "referenceType": "branch",
        "repositoryId": metadata.get("repositoryId"),
        "repositoryName": repository,
    }
    if old:
        detail["oldCommitId"] = old
    event_id = put_event(
        region,
        "aws.codecommit",
        "CodeCommit Repository State Change",
        detail,
        [metadata.get("Arn") or f"arn:aws:codecommit:{region}:{ACCOUNT_ID}:{repository}"],
    )
    return _json(start_response, 200, {"eventId": event_id, "event": event, "commitId": commit, "oldCommitId": old})


def _json(start_response, status: int, payload: dict):
    data = json.dumps(payload).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
    start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
