"""Source actions: the first action of a pipeline, turning the run's source revision into outputs.

A run learns its revision, first found wins, from
1. the `source_revision` param (the trigger form, or `conf["source_revision"]` of a triggered run);
2. its conf: `conf["source"]` (a webhook or a manual trigger put it there);
3. its triggering asset events: a run started by an event-driven trigger (CodeCommit push, ECR image
   push, S3 upload through EventBridge and SQS) has no conf; each event's extra carries the AWS event,
   and the source action takes the latest one about its own source (several events can fold into one
   run when they arrive before the scheduler creates it).
When a run names none, a GitHub or CodeCommit source releases the branch's head, S3 and ECR sources the
latest object version / image digest, as CodePipeline does. With an output artifact, the
source stores what it releases in the artifact store (release_orchestrator/artifacts.py).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from airflow.providers.amazon.aws.hooks.ecr import EcrHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import BaseOperator

from release_orchestrator.artifacts import PassesArtifacts, without_top_folder, zip_files
from release_orchestrator.events.sources import changes_in_asset_events, describe_change, describe_changes
from release_orchestrator.hooks.base import AwsCallError, aws_call
from release_orchestrator.hooks.codecommit import CodeCommitHook
from release_orchestrator.hooks.github import GitHubCallError, GitHubHook
from release_orchestrator.releases import RELEASE_NOTES_MAX_COMMITS, describe_commits, last_release, released_output

SOURCE_REVISION_PARAM = "source_revision"


class SourceRevisionMissing(ValueError):
    pass


def run_source(context: Any, accepts: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The revision this run was started with: conf["source"], else the latest triggering event that
    `accepts` (one about this action's source), overridden by the trigger form's param."""
    conf = dict((context["dag_run"].conf or {}).get("source") or {})
    if not conf and accepts is not None:
        conf = dict(event_source(context, accepts) or {})
    override = (context["params"] or {}).get(SOURCE_REVISION_PARAM)
    if override:
        conf["revision"] = str(override)
    return conf


def event_source(context: Any, accepts: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The latest change about this source among the run's triggering asset events, if any."""
    try:
        events = context.get("triggering_asset_events")
    except Exception:  # noqa: BLE001 - a context without asset events
        return None
    changes = changes_in_asset_events(events)
    if not changes:
        return None
    mine = [change for change in changes if accepts(change)]
    task = context.get("task")
    logger = getattr(task, "log", None)
    if not mine:
        if logger:
            logger.info("Triggering events are about other sources: %s", describe_changes(changes))
        return None
    latest = latest_change(mine)
    if logger:
        logger.info("Started by %d source event(s); releasing the latest: %s", len(mine), describe_change(latest))
    return latest


def latest_change(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The newest of several changes (oldest first by when their events arrived). SQS does not keep the order
    of a standard queue, so pushes to a branch are ordered by their commits instead: the push whose commit no
    other push replaced (none names it as its old commit) is the head; the arrival order decides the rest."""
    replaced = {change.get("old_commit_id") for change in changes if change.get("provider") == "codecommit"}
    heads = [c for c in changes if c.get("provider") != "codecommit" or c.get("commit_id") not in replaced]
    return (heads or changes)[-1]


class GitHubRepository:
    """A GitHub repository as the source action reads it (connection ``github_conn_id``)."""

    def __init__(self, conn_id: str, repository: str):
        self.hook, self.repository = GitHubHook(conn_id), repository

    def commit(self, commit_id: str | None, branch: str) -> dict[str, Any]:
        """The commit (the branch's head when none is named): its full id, message, author, date, link."""
        if commit_id:
            commit = self.hook.commit(self.repository, commit_id)
        else:
            commit = self.hook.branch_head(self.repository, branch)
        detail = commit.get("commit") or {}
        author = detail.get("author") or {}
        return {
            "commit_id": commit["sha"],
            "commit_message": detail.get("message", ""),
            "author": author.get("name", ""),
            "author_date": author.get("date", ""),
            "commit_url": commit.get("html_url", ""),
        }

    def write_artifact(self, commit_id: str, target: str) -> int:
        """The commit's files (GitHub's zipball, unpacked to the root as CodePipeline's CODE_ZIP) as the zip
        file `target`; returns the number of files."""
        with tempfile.TemporaryDirectory(prefix="release-source-") as work:
            fetched = os.path.join(work, "zipball.zip")
            self.hook.download_zipball(self.repository, commit_id, fetched)
            return without_top_folder(fetched, target)

    def since(self, base: str, head: str) -> list[str]:
        """The commits after `base` up to `head` (GitHub's compare), newest first, as lines."""
        compared = self.hook.compare(self.repository, base, head)
        listed = compared.get("commits") or []
        commits = [
            (
                c.get("sha", ""),
                (c.get("commit") or {}).get("message") or "",
                ((c.get("commit") or {}).get("author") or {}).get("name") or "",
            )
            for c in reversed(listed)
        ]
        return describe_commits(commits, more=max(0, int(compared.get("total_commits") or 0) - len(listed)))


class CodeCommitRepository:
    """A CodeCommit repository as the source action reads it (an AWS connection and region)."""

    def __init__(self, aws_conn_id: str | None, region_name: str | None, repository: str):
        self.hook, self.repository = CodeCommitHook(aws_conn_id=aws_conn_id, region_name=region_name), repository

    def commit(self, commit_id: str | None, branch: str) -> dict[str, Any]:
        commit_id = commit_id or self.hook.branch_head(self.repository, branch)
        commit = self.hook.commit(self.repository, commit_id)
        author = commit.get("author") or {}
        region = self.hook.conn.meta.region_name
        return {
            "commit_id": commit["commitId"],
            "commit_message": (commit.get("message") or "").rstrip("\n"),
            "author": author.get("name", ""),
            "author_date": _git_date(author.get("date", "")),
            "commit_url": f"https://{region}.console.aws.amazon.com/codesuite/codecommit/repositories/"
            f"{quote(self.repository)}/commit/{commit['commitId']}?region={region}",
        }

    def write_artifact(self, commit_id: str, target: str) -> int:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            return self.hook.write_files(self.repository, commit_id, archive)

    def since(self, base: str, head: str) -> list[str]:
        """The commits after `base` up to `head` along first parents (CodeCommit has no compare call: one
        GetCommit each, at most a message's worth), newest first, as lines."""
        commits, stopped_at = self.hook.history(self.repository, head, base, RELEASE_NOTES_MAX_COMMITS)
        lines = describe_commits(
            [(c["commitId"], c.get("message") or "", (c.get("author") or {}).get("name", "")) for c in commits]
        )
        if stopped_at is None:
            return [*lines, f"(the last release, {base[:7]}, is not in this branch's history)"]
        return lines if stopped_at == base else [*lines, "... and earlier commits"]


class GitSourceOperator(PassesArtifacts, BaseOperator):
    """source.github and source.codecommit: the commit this run releases, its files as the output artifact,
    and the commits since the pipeline's last release.

    The source asks the repository (GitHub through connection ``github_conn_id``; CodeCommit through the AWS
    connection) for the branch's head when the run names no revision (a manual or scheduled run), and for
    the commit's message and author when the run did not bring them. With an output artifact it stores the
    commit's files at the root of a zip (CodePipeline's CODE_ZIP) in the artifact store.
    """

    template_fields = ("repository", "branch")
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        repository: str,
        branch: str,
        provider: str = "github",
        github_conn_id: str = GitHubHook.default_conn_name,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        release_task_ids: list[str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.repository = repository
        self.branch = branch
        self.provider = provider
        self.github_conn_id = github_conn_id
        self.aws_conn_id, self.region_name = aws_conn_id, region_name
        # The actions of the pipeline's last stage: a run where they all succeeded is a release.
        self.release_task_ids = release_task_ids or []

    def accepts(self, change: dict[str, Any]) -> bool:
        """A CodeCommit push event about this action's repository (the trigger chose the branches)."""
        return (
            self.provider == "codecommit"
            and change.get("provider") == "codecommit"
            and change.get("repository") == self.repository
        )

    def repository_client(self) -> GitHubRepository | CodeCommitRepository:
        if self.provider == "codecommit":
            return CodeCommitRepository(self.aws_conn_id, self.region_name, self.repository)
        return GitHubRepository(self.github_conn_id, self.repository)

    def execute(self, context: Any) -> dict[str, Any]:
        source = run_source(context, self.accepts)
        commit_id = source.get("revision") or source.get("commit_id")
        repository = source.get("repository") or self.repository
        branch = source.get("branch") or self.branch
        # GitHub is asked only when the run lacks something (a webhook brings the commit's details), so a
        # pipeline without artifacts needs no token; CodeCommit's events bring only the commit's id.
        client = None
        if self.provider == "codecommit" or not commit_id or self.output_names:
            if repository != self.repository:
                raise SourceRevisionMissing(
                    f"source action {self.task_id}: the run names repository {repository!r}, and this action "
                    f"releases {self.repository!r}; a run cannot fetch another repository's files"
                )
            client = self.repository_client()
            if not commit_id:
                self.log.info("The run names no revision: releasing the head of %s", branch)
            found = client.commit(commit_id, branch)
            # The commit is the repository's full id (a run may name a short one or a branch); for the rest,
            # what the webhook brought wins (it is what the pusher saw) and the repository fills in the rest.
            source = {key: value if key == "commit_id" else source.get(key) or value for key, value in found.items()}
            commit_id = source["commit_id"]
        if not commit_id:
            raise SourceRevisionMissing(
                f"source action {self.task_id}: this run has no source revision for {self.repository}@{self.branch}. "
                f'Trigger it with conf {{"source": {{"commit_id": "<sha>"}}}} or the \'{SOURCE_REVISION_PARAM}\' param.'
            )
        outputs = {
            "CommitId": commit_id,
            "BranchName": branch,
            "RepositoryName": repository.split("/")[-1],
            "FullRepositoryName": repository,
            "CommitMessage": source.get("commit_message", ""),
            "AuthorDisplayName": source.get("author", ""),
            "AuthorDate": source.get("author_date", ""),
            "CommitUrl": source.get("commit_url")
            or (f"https://github.com/{repository}/commit/{commit_id}" if self.provider == "github" else ""),
            "ChangedFiles": list(source.get("changed_files") or []),
            "LastReleasedCommitId": "",
            "CommitsSinceLastRelease": [],
        }
        self.log.info("Releasing %s@%s commit %s: %s", repository, branch, commit_id, outputs["CommitMessage"])
        if client is not None and self.output_names:
            with tempfile.TemporaryDirectory(prefix="release-source-") as work:
                artifact = os.path.join(work, "artifact.zip")
                count = client.write_artifact(commit_id, artifact)
                self.log.info("Fetched %d files of %s at %s", count, self.repository, commit_id)
                self.put_output_file(context, artifact)
        if client is not None:
            outputs.update(self._since_last_release(context, client, commit_id))
        return outputs

    def _since_last_release(
        self, context: Any, client: GitHubRepository | CodeCommitRepository, commit_id: str
    ) -> dict[str, Any]:
        """The last release's commit and the commits after it up to this one, for the reviewer;
        informational, so a failure to find them is logged, not fatal."""
        found: dict[str, Any] = {"LastReleasedCommitId": "", "CommitsSinceLastRelease": []}
        if not self.release_task_ids:
            return found
        dag_id, run_id = context["dag_run"].dag_id, context["dag_run"].run_id
        try:
            released_run = last_release(dag_id, self.release_task_ids, run_id)
            released = released_output(dag_id, self.task_id, released_run) if released_run else None
        except Exception as error:  # noqa: BLE001 - release notes are informational: the release goes on
            self.log.warning("Could not find the pipeline's last release: %s", error)
            return found
        base = (released or {}).get("CommitId")
        if not base:
            self.log.info("No earlier release of this pipeline: no commits to compare with")
            return found
        found["LastReleasedCommitId"] = base
        try:
            found["CommitsSinceLastRelease"] = client.since(base, commit_id)
        except (GitHubCallError, AwsCallError) as error:
            self.log.warning("Could not list the commits since the last release (%s): %s", base, error)
            return found
        self.log.info(
            "%d commit(s) since the last release %s (run %s)",
            len(found["CommitsSinceLastRelease"]),
            base,
            released_run,
        )
        return found


def _git_date(value: str) -> str:
    """CodeCommit's git date ('1700000000 +0000') as ISO 8601, as GitHub gives it; anything else unchanged."""
    seconds, _, offset = value.partition(" ")
    if not seconds.isdigit() or not re.fullmatch(r"[+-]\d{4}", offset or "+0000"):
        return value
    sign = -1 if offset.startswith("-") else 1
    zone = timezone(sign * timedelta(hours=int(offset[1:3] or 0), minutes=int(offset[3:5] or 0)))
    return datetime.fromtimestamp(int(seconds), zone).isoformat().replace("+00:00", "Z")


class S3SourceOperator(PassesArtifacts, AwsBaseOperator[S3Hook]):
    """source.s3: an object version in a versioned bucket.

    The connection arguments are the amazon provider's (``aws_conn_id``, ``region_name``, ``verify``,
    ``botocore_config``).
    """

    aws_hook_class = S3Hook
    template_fields: Sequence[str] = aws_template_fields("bucket", "object_key")
    ui_color = "#e8f1fb"

    def __init__(self, *, bucket: str, object_key: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.bucket, self.object_key = bucket, object_key

    def accepts(self, change: dict[str, Any]) -> bool:
        return (
            change.get("provider") == "s3"
            and change.get("bucket") == self.bucket
            and change.get("object_key") == self.object_key
        )

    def execute(self, context: Any) -> dict[str, Any]:
        source = run_source(context, self.accepts)
        client = self.hook.conn
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key}
        version = source.get("revision") or source.get("version_id")
        if version:
            request["VersionId"] = version
        version_named = f" version '{version}'" if version else ""
        with aws_call("HeadObject", f"s3://{self.bucket}/{self.object_key}{version_named}"):
            head = client.head_object(**request)
        if self.output_names:  # the object version itself is the artifact, as CodePipeline copies it
            target = self.output_artifact(context)
            copied = {"Bucket": self.bucket, "Key": self.object_key}
            if head.get("VersionId"):
                copied["VersionId"] = head["VersionId"]
            with aws_call("CopyObject", f"s3://{self.bucket}/{self.object_key} to artifact {target.uri}"):
                put = self._s3(self.artifacts.get("region")).copy_object(
                    Bucket=target.bucket, Key=target.key, CopySource=copied, **self.encryption
                )
            self.record_output(context, replace(target, version_id=put.get("VersionId")))
        return {
            "VersionId": head.get("VersionId") or version or "",
            "ETag": head.get("ETag", "").strip('"'),
            "ObjectKey": self.object_key,
            "BucketName": self.bucket,
        }


class EcrSourceOperator(PassesArtifacts, AwsBaseOperator[EcrHook]):
    """source.ecr: an image, by digest when the run names one, else the tag's current digest.

    The connection arguments are the amazon provider's (``aws_conn_id``, ``region_name``, ``verify``,
    ``botocore_config``).
    """

    aws_hook_class = EcrHook
    template_fields: Sequence[str] = aws_template_fields("repository", "image_tag")
    ui_color = "#e8f1fb"

    def __init__(self, *, repository: str, image_tag: str = "latest", **kwargs: Any):
        super().__init__(**kwargs)
        self.repository, self.image_tag = repository, image_tag

    def accepts(self, change: dict[str, Any]) -> bool:
        return (
            change.get("provider") == "ecr"
            and change.get("repository") == self.repository
            and change.get("image_tag") == self.image_tag
        )

    def execute(self, context: Any) -> dict[str, Any]:
        source = run_source(context, self.accepts)
        client = self.hook.conn
        digest = source.get("revision") or source.get("image_digest")
        if digest:
            image_id, image = {"imageDigest": digest}, f"image {digest}"
        else:
            tag = source.get("image_tag") or self.image_tag
            image_id, image = {"imageTag": tag}, f"image tag '{tag}'"
        with aws_call("DescribeImages", f"ecr repository '{self.repository}' {image}"):
            detail = client.describe_images(repositoryName=self.repository, imageIds=[image_id])["imageDetails"][0]
        with aws_call("DescribeRepositories", f"ecr repository '{self.repository}'"):
            uri = client.describe_repositories(repositoryNames=[self.repository])["repositories"][0]["repositoryUri"]
        outputs = {
            "ImageDigest": detail["imageDigest"],
            "ImageTag": _image_tag(detail.get("imageTags") or [], source.get("image_tag") or self.image_tag),
            "ImageURI": f"{uri}@{detail['imageDigest']}",
            "RegistryId": detail["registryId"],
            "RepositoryName": self.repository,
        }
        if self.output_names:  # CodePipeline's ECR source artifact: imageDetail.json
            self.put_output(context, zip_files({"imageDetail.json": json.dumps(_image_detail(detail, uri)).encode()}))
        return outputs


def _image_detail(detail: dict[str, Any], uri: str) -> dict[str, Any]:
    pushed = detail.get("imagePushedAt")
    return {
        "ImageSizeInBytes": str(detail.get("imageSizeInBytes", "")),
        "ImageDigest": detail["imageDigest"],
        "Version": "1.0",
        "ImagePushedAt": pushed.isoformat() if hasattr(pushed, "isoformat") else str(pushed or ""),
        "RegistryId": detail["registryId"],
        "RepositoryName": detail.get("repositoryName", ""),
        "ImageURI": f"{uri}@{detail['imageDigest']}",
        "ImageTags": detail.get("imageTags") or [],
    }


def _image_tag(tags: list[str], wanted: str) -> str:
    """The tag the run asked for when the image carries it, else the image's first tag."""
    return wanted if wanted in tags or not tags else tags[0]
