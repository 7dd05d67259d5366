"""CodeCommit, as the CodeCommit source action reads it: a branch's head, a commit, its files, its history.

The amazon provider has no CodeCommit hook. CodeCommit has no archive call, so the files of a commit are
read folder by folder (GetFolder) and file by file (GetFile), as a client without git does.
"""

from __future__ import annotations

import posixpath
import zipfile
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from release_orchestrator.hooks.base import aws_call


class CodeCommitHook(AwsBaseHook):
    """Interact with AWS CodeCommit through boto3's ``codecommit`` client."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "codecommit"
        super().__init__(*args, **kwargs)

    def branch_head(self, repository: str, branch: str) -> str:
        with aws_call("GetBranch", f"branch '{branch}' of codecommit repository '{repository}'"):
            return self.conn.get_branch(repositoryName=repository, branchName=branch)["branch"]["commitId"]

    def commit(self, repository: str, commit_id: str) -> dict[str, Any]:
        """CodeCommit's commit: commitId, message, author {name, email, date}, parents."""
        with aws_call("GetCommit", f"commit {commit_id} of codecommit repository '{repository}'"):
            return self.conn.get_commit(repositoryName=repository, commitId=commit_id)["commit"]

    def history(self, repository: str, head: str, base: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """The commits after `base` up to `head` along first parents, newest first, at most `limit`; and the
        commit the walk stopped at: `base` (that is all of them), None (head's first commit: base is not an
        ancestor) or another (base lies further back than `limit`)."""
        commits: list[dict[str, Any]] = []
        sha: str | None = head
        while sha and sha != base and len(commits) < limit:
            commit = self.commit(repository, sha)
            commits.append(commit)
            sha = (commit.get("parents") or [None])[0]
        return commits, sha

    def write_files(self, repository: str, commit_id: str, archive: zipfile.ZipFile) -> int:
        """Every file of the repository at `commit_id` into `archive` (paths from the root); returns the count."""
        count, folders = 0, [""]
        while folders:
            folder = folders.pop()
            with aws_call("GetFolder", f"folder '/{folder}' at {commit_id} of codecommit repository '{repository}'"):
                listing = self.conn.get_folder(
                    repositoryName=repository, commitSpecifier=commit_id, folderPath="/" + folder
                )
            folders += [sub["absolutePath"] for sub in listing.get("subFolders", [])]
            for entry in listing.get("files", []):
                path = entry["absolutePath"].lstrip("/")
                with aws_call("GetFile", f"'{path}' at {commit_id} of codecommit repository '{repository}'"):
                    content = self.conn.get_file(repositoryName=repository, commitSpecifier=commit_id, filePath=path)
                info = zipfile.ZipInfo(posixpath.normpath(path))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o755 if entry.get("fileMode") == "EXECUTABLE" else 0o644) << 16
                archive.writestr(info, content["fileContent"])
                count += 1
        return count
