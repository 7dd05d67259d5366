"""A minimal GitHub REST API on the sandbox's loopback port, for the GitHub source action's real client.

Base URL (what a GitHub Enterprise connection's host would be): ``http://127.0.0.1:<port>/_github``.
It serves what the source action reads, in GitHub's response shapes:

    GET /repos/{owner}/{repo}/branches/{branch}      the branch and its head commit
    GET /repos/{owner}/{repo}/commits/{ref}          a commit (by sha, short sha or branch name)
    GET /repos/{owner}/{repo}/compare/{base}...{head} the commits after base up to head
    GET /repos/{owner}/{repo}/zipball/{ref}          302 to the archive, as GitHub redirects to codeload
    GET /_codeload/{owner}/{repo}/{sha}.zip          the archive: the files under one top-level folder

Every API call needs ``Authorization: token <t>`` or ``Bearer <t>`` with the sandbox's token (401 "Bad
credentials" otherwise); an unknown repository, branch or commit is 404 "Not Found", as on GitHub.

A test or the demo pushes a commit with ``POST /_sandbox/github/push`` ({"repository", "branch", "files":
{path: text}, "message", "author"}; answers {"sha", "before", ...}), then sends the matching push webhook.
``acme/webapp`` is seeded with the sample application (include/sample_app) as its first commit on main.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

from include.sandbox.git_store import GitStore, Repository

TOKEN = "sandbox-github-token"
SEEDED_REPOSITORY = "acme/webapp"
SAMPLE_APP = Path(__file__).resolve().parent.parent / "sample_app"
PREFIX = "/_github"

_ROUTE = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<kind>branches|commits|compare|zipball)/(?P<ref>.+)$")
_CODELOAD = re.compile(r"^/_codeload/(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<sha>[0-9a-f]{40})\.zip$")


class GitHubEmulator(GitStore):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []  # "GET /repos/...", for tests that count calls
        self.push(SEEDED_REPOSITORY, "main", sample_app_files(), "Initial commit of the web application")

    # ---- serving --------------------------------------------------------------------------------

    def serve(self, environ, start_response):
        path = environ.get("PATH_INFO", "")[len(PREFIX) :]
        method = environ.get("REQUEST_METHOD", "GET")
        with self.lock:
            self.requests.append(f"{method} {path}")
        if method != "GET":
            return _json(start_response, 404, {"message": "Not Found"})
        if match := _CODELOAD.match(path):  # codeload takes no token: the redirect's URL is the grant
            return self._archive(start_response, f"{match['owner']}/{match['repo']}", match["sha"])
        if environ.get("HTTP_AUTHORIZATION", "").split(" ", 1)[-1].strip() != TOKEN:
            return _json(start_response, 401, {"message": "Bad credentials"})
        match = _ROUTE.match(path)
        if not match:
            return _json(start_response, 404, {"message": "Not Found"})
        with self.lock:
            repo = self.repositories.get(f"{match['owner']}/{match['repo']}")
            if repo is None:
                return _json(start_response, 404, {"message": "Not Found"})
            kind, ref = match["kind"], match["ref"]
            if kind == "branches":
                sha = repo.branches.get(ref)
                if sha is None:
                    return _json(start_response, 404, {"message": "Branch not found"})
                return _json(start_response, 200, {"name": ref, "commit": self._commit_doc(repo, sha)})
            if kind == "compare":
                base, dots, head = ref.partition("...")
                base_sha, head_sha = self.resolve(repo, base), self.resolve(repo, head)
                if not dots or base_sha is None or head_sha is None:
                    return _json(start_response, 404, {"message": "Not Found"})
                return _json(start_response, 200, self._compare(repo, base_sha, head_sha))
            sha = self.resolve(repo, ref)
            if sha is None:
                return _json(start_response, 404, {"message": f"No commit found for SHA: {ref}"})
            if kind == "commits":
                return _json(start_response, 200, self._commit_doc(repo, sha, with_files=True))
        location = f"{_base_url(environ)}/_codeload/{repo.full_name}/{sha}.zip"
        start_response("302 Found", [("Location", location), ("Content-Length", "0")])
        return [b""]

    def _commit_doc(self, repo: Repository, sha: str, with_files: bool = False) -> dict:
        commit = repo.commits[sha]
        doc = {
            "sha": sha,
            "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
            "commit": {
                "message": commit.message,
                "author": {"name": commit.author, "email": "author@example.com", "date": commit.date},
                "committer": {"name": commit.author, "email": "author@example.com", "date": commit.date},
            },
            "author": {"login": commit.author.lower().replace(" ", "-")},
            "parents": [{"sha": parent} for parent in commit.parents],
        }
        if with_files:
            doc["files"] = [{"filename": path, "status": "modified"} for path in commit.changed]
        return doc

    def _compare(self, repo: Repository, base: str, head: str) -> dict:
        """Commits reachable from head back to (not including) base, oldest first, as GitHub lists them."""
        chain, reached = self.first_parents(repo, head, base)
        if not reached:  # base is not an ancestor of head: GitHub says "diverged"; we list head's history
            status = "diverged"
        else:
            status = "identical" if not chain else "ahead"
        commits = [self._commit_doc(repo, s) for s in reversed(chain)]
        return {"status": status, "ahead_by": len(chain), "total_commits": len(chain), "commits": commits}

    def _archive(self, start_response, full_name: str, sha: str):
        with self.lock:
            repo = self.repositories.get(full_name)
            commit = repo.commits.get(sha) if repo else None
            if commit is None:
                return _json(start_response, 404, {"message": "Not Found"})
            top = f"{full_name.replace('/', '-')}-{sha[:7]}/"
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path, content in sorted(commit.files.items()):
                    archive.writestr(top + path, content)
        data = buffer.getvalue()
        start_response("200 OK", [("Content-Type", "application/zip"), ("Content-Length", str(len(data)))])
        return [data]


def sample_app_files() -> dict[str, bytes]:
    return {
        str(p.relative_to(SAMPLE_APP)): p.read_bytes()
        for p in sorted(SAMPLE_APP.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _base_url(environ) -> str:
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{PREFIX}"


def _json(start_response, status: int, payload: dict):
    data = json.dumps(payload).encode()
    reasons = {200: "OK", 401: "Unauthorized", 404: "Not Found"}
    start_response(
        f"{status} {reasons.get(status, 'Error')}",
        [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]
