"""GitHub's REST API, as the GitHub source action reads it: a branch's head, a commit, a comparison, an archive.

The Airflow connection (default ``github_default``) holds the token in its password field and, for GitHub
Enterprise Server, the API's base URL in its host (``https://github.example.com/api/v3``); with no host it is
``https://api.github.com``. The token needs read access to the repository's contents (a fine-grained token
with "Contents: read", or a classic token with ``repo`` for private repositories).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException, BaseHook

PUBLIC_API_URL = "https://api.github.com"
RETRIED_STATUSES = (429, 500, 502, 503, 504)
ATTEMPTS = 4


class GitHubCallError(AirflowException):
    """A GitHub API call failed; the message names the call, the repository and what GitHub said.

    ``status`` is the HTTP status (None when no answer came).
    """

    def __init__(self, call: str, status: int | None, message: str):
        self.call, self.status = call, status
        super().__init__(f"GitHub {call} failed: {message}")


class GitHubHook(BaseHook):
    conn_name_attr = "github_conn_id"
    default_conn_name = "github_default"
    conn_type = "http"
    hook_name = "GitHub (release orchestrator)"

    def __init__(self, github_conn_id: str = default_conn_name, timeout: float = 30.0):
        super().__init__()
        self.github_conn_id = github_conn_id
        self.timeout = timeout

    # ---- what the source action asks ------------------------------------------------------------

    def branch_head(self, repository: str, branch: str) -> dict[str, Any]:
        """The commit at the head of `branch` (GitHub's commit object: sha, commit.message, ...)."""
        return self._get_json(f"/repos/{repository}/branches/{quote(branch, safe='')}")["commit"]

    def commit(self, repository: str, ref: str) -> dict[str, Any]:
        return self._get_json(f"/repos/{repository}/commits/{quote(ref, safe='')}")

    def compare(self, repository: str, base: str, head: str) -> dict[str, Any]:
        """The commits after `base` up to `head` (GitHub lists up to 250, oldest first)."""
        return self._get_json(f"/repos/{repository}/compare/{quote(base, safe='')}...{quote(head, safe='')}")

    def download_zipball(self, repository: str, ref: str, target: str) -> int:
        """Write the repository's files at `ref`, GitHub's zip archive (one top-level folder), to the file
        `target`, streaming (a large repository never sits in memory); returns its size in bytes."""
        size = 0

        def save(response: httpx.Response) -> None:
            nonlocal size
            with open(target, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    size += len(chunk)

        self._get(f"/repos/{repository}/zipball/{quote(ref, safe='')}", consume=save)
        return size

    # ---- plumbing -------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        try:
            connection = self.get_connection(self.github_conn_id)
        except AirflowNotFoundException:
            raise GitHubCallError(
                "connection",
                None,
                f"Airflow connection '{self.github_conn_id}' is not defined: create it with a token that can read "
                "the repository as its password (and, for GitHub Enterprise, the API URL as its host)",
            ) from None
        base = (connection.host or PUBLIC_API_URL).rstrip("/")
        if "://" not in base:
            base = f"https://{base}"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if connection.password:
            headers["Authorization"] = f"Bearer {connection.password}"
        return httpx.Client(base_url=base, headers=headers, timeout=self.timeout, follow_redirects=True)

    def _get_json(self, path: str) -> dict[str, Any]:
        return self._get(path, consume=lambda response: response.read()).json()

    def _get(self, path: str, consume: Callable[[httpx.Response], Any]) -> httpx.Response:
        """GET `path`, streamed to `consume` once it answers; retried with backoff on 429, 5xx and lost answers,
        as GitHub asks of clients."""
        call = f"GET {path}"
        with self._client() as client:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    with client.stream("GET", path) as response:
                        if response.status_code < 400:
                            consume(response)
                            return response
                        response.read()
                        if response.status_code not in RETRIED_STATUSES or attempt == ATTEMPTS:
                            raise GitHubCallError(call, response.status_code, _explain(response, self.github_conn_id))
                except httpx.HTTPError as error:
                    if attempt == ATTEMPTS:
                        raise GitHubCallError(call, None, f"{type(error).__name__}: {error}") from error
                time.sleep(min(2**attempt, 10))
        raise AssertionError("unreachable")


def _explain(response: httpx.Response, conn_id: str) -> str:
    try:
        said = response.json().get("message") or response.text
    except ValueError:
        said = response.text[:200]
    hint = ""
    if response.status_code == 401:
        hint = f"; check the token in the password of Airflow connection '{conn_id}'"
    elif response.status_code == 404:
        hint = f" (or the token of connection '{conn_id}' cannot read this repository)"
    return f"{response.status_code} {said}{hint}"
