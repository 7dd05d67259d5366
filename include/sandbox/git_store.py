"""The sandbox's git repositories: commits with whole trees, branches, first-parent history.

GitHub (include/sandbox/github.py) and CodeCommit (include/sandbox/codecommit.py) serve their own APIs from
a store of this shape; neither runs git. A commit's sha is a hash of what made it, or the one a caller names.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass
class Commit:
    sha: str
    message: str
    author: str
    date: str
    parents: list[str]
    files: dict[str, bytes]  # the whole tree at this commit
    changed: list[str]


@dataclass
class Repository:
    full_name: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> head sha
    commits: dict[str, Commit] = field(default_factory=dict)


class GitStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repositories: dict[str, Repository] = {}

    def push(
        self,
        repository: str,
        branch: str,
        files: dict[str, str | bytes],
        message: str,
        author: str = "Demo Author",
        delete: list[str] | None = None,
        sha: str | None = None,
    ) -> dict:
        """A new commit on `branch` (created from nothing when new) changing `files`; returns its summary.
        Naming a commit the repository has (`sha`) moves the branch to it."""
        with self.lock:
            repo = self.repositories.setdefault(repository, Repository(repository))
            before = repo.branches.get(branch)
            if sha not in repo.commits:
                tree = dict(repo.commits[before].files) if before else {}
                for path, content in files.items():
                    tree[path] = content.encode() if isinstance(content, str) else content
                for path in delete or []:
                    tree.pop(path, None)
                date = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
                seed = f"{repository}\n{branch}\n{before}\n{message}\n{time.time_ns()}\n{sorted(files)}"
                sha = sha or hashlib.sha1(seed.encode()).hexdigest()
                changed = sorted(set(files) | set(delete or []))
                repo.commits[sha] = Commit(sha, message, author, date, [before] if before else [], tree, changed)
            repo.branches[branch] = sha
            commit = repo.commits[sha]
            return {
                "repository": repository,
                "branch": branch,
                "sha": sha,
                "before": before or "0" * 40,
                "message": commit.message,
                "author": commit.author,
                "date": commit.date,
                "files": commit.changed,
            }

    def delete_branch(self, repository: str, branch: str) -> str | None:
        """Removes the branch (its commits stay); returns the head it had."""
        with self.lock:
            repo = self.repositories.get(repository)
            return repo.branches.pop(branch, None) if repo else None

    def head(self, repository: str, branch: str) -> str | None:
        with self.lock:
            repo = self.repositories.get(repository)
            return repo.branches.get(branch) if repo else None

    @staticmethod
    def resolve(repo: Repository, ref: str) -> str | None:
        """A branch name, a full sha or an unambiguous prefix of 7+ hex digits."""
        if ref in repo.branches:
            return repo.branches[ref]
        matches = [sha for sha in repo.commits if sha.startswith(ref.lower())] if len(ref) >= 7 else []
        return matches[0] if len(matches) == 1 else None

    @staticmethod
    def first_parents(repo: Repository, head: str, base: str | None) -> tuple[list[str], bool]:
        """The commits from head back to (not including) base along first parents, newest first, and whether
        base was reached (False: base is not an ancestor, the list is head's whole history)."""
        chain, sha = [], head
        while sha and sha != base:
            chain.append(sha)
            parents = repo.commits[sha].parents
            sha = parents[0] if parents else None
        return chain, sha == base
