"""CodeCommit's content API on the sandbox, where moto has repositories but no git.

moto answers CreateRepository/GetRepository/DeleteRepository; this serves what the CodeCommit source
action reads, from the sandbox's git store (include/sandbox/git_store.py), in CodeCommit's JSON shapes:

    GetBranch       a branch's head commit
    GetCommit       a commit's message, author, parents
    GetFolder       a folder's files and subfolders at a commit
    GetFile         one file's content at a commit
    GetDifferences  the files changed between two commits

A repository must exist in moto (RepositoryDoesNotExistException otherwise); its branches and commits live
here, keyed by region and name. Commits arrive with the push endpoint (include/sandbox/events.py), which also
puts the push's EventBridge event on the bus.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
from datetime import datetime

from include.sandbox.common import backend, region_of
from include.sandbox.git_store import GitStore, Repository

TARGET_PREFIX = "CodeCommit_20150413"
DIFFERENCES_PAGE = 100  # CodeCommit's MaxResults default for GetDifferences


class CodeCommitError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class CodeCommitEmulator(GitStore):
    OPERATIONS = ("GetBranch", "GetCommit", "GetFolder", "GetFile", "GetDifferences")

    def intercept(self, environ: dict, start_response):
        """Answers the content calls; returns None for everything else (moto's)."""
        prefix, _, operation = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
        if prefix != TARGET_PREFIX or operation not in self.OPERATIONS:
            return None
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            params = json.loads(environ["wsgi.input"].read(length) or b"{}")
            with self.lock:
                repo = self.repository(region_of(environ), params.get("repositoryName"))
                answer = getattr(self, "_" + operation)(repo, params)
        except ValueError:
            return _reply(start_response, 400, {"__type": "SerializationException", "message": "Invalid JSON"})
        except CodeCommitError as error:
            return _reply(start_response, 400, {"__type": error.code, "message": str(error)})
        return _reply(start_response, 200, answer)

    @staticmethod
    def key(region: str, repository: str) -> str:
        return f"{region}/{repository}"

    def repository(self, region: str, name: str | None) -> Repository:
        if not name:
            raise CodeCommitError("RepositoryNameRequiredException", "A repository name is required.")
        if name not in backend("codecommit", region).repositories:
            raise CodeCommitError("RepositoryDoesNotExistException", f"{name} does not exist")
        return self.repositories.get(self.key(region, name)) or Repository(self.key(region, name))

    # ---- operations ------------------------------------------------------------------------------

    def _GetBranch(self, repo: Repository, params: dict) -> dict:
        branch = params.get("branchName") or ""
        if branch not in repo.branches:
            raise CodeCommitError("BranchDoesNotExistException", f"Branch {branch} does not exist")
        return {"branch": {"branchName": branch, "commitId": repo.branches[branch]}}

    def _GetCommit(self, repo: Repository, params: dict) -> dict:
        sha = params.get("commitId") or ""
        if sha not in repo.commits:
            raise CodeCommitError("CommitIdDoesNotExistException", f"Commit {sha} does not exist")
        commit = repo.commits[sha]
        person = {"name": commit.author, "email": "author@example.com", "date": _git_date(commit.date)}
        return {
            "commit": {
                "commitId": sha,
                "treeId": _hash(sha, "/"),
                "parents": commit.parents,
                "message": commit.message + "\n",  # git keeps the message's final newline
                "author": person,
                "committer": person,
                "additionalData": "",
            }
        }

    def _GetFolder(self, repo: Repository, params: dict) -> dict:
        sha = self._commit(repo, params.get("commitSpecifier"))
        folder = (params.get("folderPath") or "").strip("/")
        files, subfolders = [], set()
        for path in sorted(repo.commits[sha].files):
            inside = path[len(folder) + 1 :] if folder else path
            if folder and not path.startswith(folder + "/"):
                continue
            head, _, rest = inside.partition("/")
            if rest:
                subfolders.add(head)
            else:
                blob = _blob_id(repo.commits[sha].files[path])
                files.append({"blobId": blob, "absolutePath": path, "relativePath": inside, "fileMode": "NORMAL"})
        if folder and not files and not subfolders:
            raise CodeCommitError("FolderDoesNotExistException", f"Folder {folder} does not exist at {sha}")
        return {
            "commitId": sha,
            "folderPath": folder,
            "treeId": _hash(sha, folder),
            "subFolders": [
                {
                    "treeId": _hash(sha, posixpath.join(folder, name)),
                    "absolutePath": posixpath.join(folder, name),
                    "relativePath": name,
                }
                for name in sorted(subfolders)
            ],
            "files": files,
            "symbolicLinks": [],
            "subModules": [],
        }

    def _GetFile(self, repo: Repository, params: dict) -> dict:
        sha = self._commit(repo, params.get("commitSpecifier"))
        path = (params.get("filePath") or "").strip("/")
        content = repo.commits[sha].files.get(path)
        if content is None:
            raise CodeCommitError("FileDoesNotExistException", f"File {path} does not exist at {sha}")
        return {
            "commitId": sha,
            "blobId": _blob_id(content),
            "filePath": path,
            "fileMode": "NORMAL",
            "fileSize": len(content),
            "fileContent": base64.b64encode(content).decode(),
        }

    def _GetDifferences(self, repo: Repository, params: dict) -> dict:
        after = self._commit(repo, params.get("afterCommitSpecifier"))
        before_files = (
            repo.commits[self._commit(repo, params["beforeCommitSpecifier"])].files
            if params.get("beforeCommitSpecifier")
            else {}
        )
        after_files = repo.commits[after].files
        differences = []
        for path in sorted(set(before_files) | set(after_files)):
            old, new = before_files.get(path), after_files.get(path)
            if old == new:
                continue
            entry: dict = {"changeType": "A" if old is None else "D" if new is None else "M"}
            if old is not None:
                entry["beforeBlob"] = {"blobId": _blob_id(old), "path": path, "mode": "100644"}
            if new is not None:
                entry["afterBlob"] = {"blobId": _blob_id(new), "path": path, "mode": "100644"}
            differences.append(entry)
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or DIFFERENCES_PAGE)
        page = {"differences": differences[start : start + size]}
        if start + size < len(differences):
            page["NextToken"] = str(start + size)
        return page

    def _commit(self, repo: Repository, specifier: str | None) -> str:
        sha = self.resolve(repo, specifier or "")
        if sha is None:
            raise CodeCommitError("CommitDoesNotExistException", f"Commit {specifier} does not exist")
        return sha


def _hash(*parts: str) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _git_date(iso: str) -> str:
    """CodeCommit gives dates as git does: epoch seconds and offset ("1700000000 +0000")."""
    return f"{int(datetime.fromisoformat(iso.replace('Z', '+00:00')).timestamp())} +0000"


def _reply(start_response, status: int, payload: dict):
    data = json.dumps(payload).encode()
    reason = {200: "OK", 400: "Bad Request"}.get(status, "Error")
    start_response(
        f"{status} {reason}", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))]
    )
    return [data]
