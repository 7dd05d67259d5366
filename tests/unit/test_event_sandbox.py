"""The sandbox's source change events: S3 uploads (moto), ECR pushes and simulated CodeCommit pushes reach the queue."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from botocore.exceptions import ClientError

from include.sandbox import resources
from include.sandbox.events import SOURCE_EVENTS_QUEUE
from release_orchestrator.events.sources import changes_in_message
from tests.unit.conftest import sandbox_client as client


def drain(sb) -> list[dict]:
    sqs, changes = client(sb, "sqs"), []
    while batch := sqs.receive_message(QueueUrl=sb.queue_url, MaxNumberOfMessages=10).get("Messages", []):
        changes += [change for m in batch for change, _ in changes_in_message(m["Body"])]
        sqs.delete_message_batch(
            QueueUrl=sb.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return changes


def push(sb, **body) -> httpx.Response:
    return httpx.post(f"{sb.url}/_sandbox/codecommit/push", json=body, timeout=10)


def test_the_default_queue_is_seeded(sandbox):
    assert sandbox.queue_url.endswith(f"/{SOURCE_EVENTS_QUEUE}")


def test_an_s3_upload_to_the_artifact_bucket_is_an_event(sandbox):
    drain(sandbox)
    version = client(sandbox, "s3").put_object(Bucket=resources.ARTIFACT_BUCKET, Key="a/b.zip", Body=b"1")["VersionId"]
    [change] = drain(sandbox)
    assert (change["provider"], change["object_key"], change["version_id"]) == ("s3", "a/b.zip", version)


def test_an_ecr_image_push_is_an_event_with_its_digest_and_tag(sandbox):
    drain(sandbox)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + "c" * 64,
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 1,
                "digest": "sha256:" + uuid.uuid4().hex * 2,
            }
        ],
    }
    image = client(sandbox, "ecr").put_image(
        repositoryName="events-test", imageManifest=json.dumps(manifest), imageTag="v7"
    )["image"]
    [change] = drain(sandbox)
    assert change == {
        **change,
        "provider": "ecr",
        "repository": "events-test",
        "image_tag": "v7",
        "image_digest": image["imageId"]["imageDigest"],
    }
    with pytest.raises(ClientError):  # a failed push (no such repository) is no event
        client(sandbox, "ecr").put_image(repositoryName="missing", imageManifest=json.dumps(manifest), imageTag="x")
    assert drain(sandbox) == []


def test_codecommit_pushes_create_update_and_delete_branches(sandbox):
    drain(sandbox)
    first, second = "1" * 40, "2" * 40
    assert push(sandbox, repository="events-test", branch="main", commitId=first).json()["event"] == "referenceCreated"
    updated = push(sandbox, repository="events-test", branch="main", commitId=second).json()
    assert (updated["event"], updated["oldCommitId"]) == ("referenceUpdated", first)
    assert push(sandbox, repository="events-test", branch="main", delete=True).json()["event"] == "referenceDeleted"
    changes = drain(sandbox)  # a deleted branch is not a change to release
    assert [(c["branch"], c["commit_id"], c["old_commit_id"]) for c in changes] == [
        ("main", first, None),
        ("main", second, first),
    ]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"repository": "missing", "branch": "main"}, 404),
        ({"repository": "events-test"}, 400),
        ({"repository": "events-test", "branch": "main", "commitId": "not-a-sha"}, 400),
    ],
)
def test_codecommit_push_refuses_bad_requests(sandbox, body, status):
    assert push(sandbox, **body).status_code == status
