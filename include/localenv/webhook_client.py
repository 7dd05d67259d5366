"""Sends signed webhook deliveries as GitHub does: for the demo, the integration tests and trying things by hand.

from include.localenv.webhook_client import send_github_push
send_github_push("http://127.0.0.1:8080/release-webhooks/github", "s3cret", "acme/webapp", "main",
                 "9f1c...", ["web/app.py"])
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime, timezone

import httpx


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_push_payload(
    repository: str,
    branch: str,
    commit: str,
    files: list[str],
    *,
    tag: str | None = None,
    message: str = "",
    author: str = "Demo Author",
) -> dict:
    """A push event payload with the fields GitHub sends that the receiver reads (one commit)."""
    ref = f"refs/tags/{tag}" if tag else f"refs/heads/{branch}"
    head = {
        "id": commit,
        "message": message or f"Change {', '.join(files) or 'nothing'}",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "url": f"https://github.com/{repository}/commit/{commit}",
        "author": {"name": author, "email": "author@example.com", "username": author.lower().replace(" ", "-")},
        "added": [],
        "removed": [],
        "modified": list(files),
    }
    return {
        "ref": ref,
        "before": "0" * 40,
        "after": commit,
        "created": False,
        "deleted": False,
        "forced": False,
        "repository": {"full_name": repository, "html_url": f"https://github.com/{repository}"},
        "pusher": {"name": author},
        "commits": [head],
        "head_commit": head,
    }


def send_github(
    url: str, secret: str, event: str, payload: dict | bytes, delivery_id: str | None = None, timeout: float = 30
) -> httpx.Response:
    """POST a signed GitHub delivery of `event` (a dict is sent as JSON; bytes are sent as they are)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/local",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
    }
    return httpx.post(url, content=body, headers=headers, timeout=timeout)


def send_github_push(
    url: str,
    secret: str,
    repository: str,
    branch: str,
    commit: str,
    files: list[str],
    delivery_id: str | None = None,
    message: str = "",
) -> httpx.Response:
    """Push `commit` to `branch` of `repository`, changing `files`, as a GitHub webhook would tell it."""
    payload = github_push_payload(repository, branch, commit, files, message=message)
    return send_github(url, secret, "push", payload, delivery_id)


def push_commit(
    sandbox_url: str, repository: str, branch: str, files: dict[str, str], message: str, author: str = "Demo Author"
) -> dict:
    """Commit `files` to `branch` of `repository` on the sandbox's GitHub (include/sandbox/github.py), as a
    developer's `git push` does; returns {"sha", "before", "files", ...} for the matching webhook."""
    response = httpx.post(
        f"{sandbox_url}/_sandbox/github/push",
        json={"repository": repository, "branch": branch, "files": files, "message": message, "author": author},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()
