"""Deploy actions: ``deploy.s3``, an artifact (a zip in S3) put into a bucket, extracted or as it is.

Synchronous: the copy happens in the worker. The archive is spooled to a temporary file (zip needs to seek)
and each file is streamed from it into its object, so a large artifact is never held in memory. A retry
puts the same objects again. A kill (on_kill) lets the object being put finish and puts no further one.
See docs/operators.md.
"""

from __future__ import annotations

import mimetypes
import posixpath
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.artifacts import PassesArtifacts
from release_orchestrator.hooks.base import aws_call
from release_orchestrator.links import S3DeployLink
from release_orchestrator.pipeline.action_types import s3_uri_problem

if TYPE_CHECKING:
    from airflow.sdk import Context

# Archives up to this size are spooled in memory, larger ones on disk.
SPOOL_IN_MEMORY_BYTES = 16 * 1024 * 1024
ZIP_CONTENT_TYPE = "application/zip"


class ArtifactError(AirflowException):
    """The artifact cannot be deployed: not an S3 URI, or not a readable zip."""


class DeployStopped(AirflowException):
    """The task was killed between two objects: the rest were not put."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``; ArtifactError naming the value otherwise."""
    if problem := s3_uri_problem(str(uri)):
        raise ArtifactError(f"source: {problem}")
    bucket, _, key = str(uri).removeprefix("s3://").partition("/")
    return bucket, key


def member_key(prefix: str, name: str) -> str:
    """The object key of archive member ``name`` under ``prefix``."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or ".." in parts:
        raise ArtifactError(f"archive member {name!r} would land outside {prefix or 'the bucket root'}")
    return posixpath.join(prefix, name) if prefix else name


def content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class S3DeployOperator(PassesArtifacts, AwsBaseOperator[S3Hook]):
    """Put an artifact into a bucket (action type ``deploy.s3``).

    :param bucket_name: the target bucket.
    :param source: the artifact, ``s3://bucket/key.zip``, when the action has no input artifact.
    :param extract: unzip it and put each file under ``object_key`` (a prefix, may be empty); else copy the
        zip to ``object_key``.
    :param object_key: prefix (extract) or key (no extract).
    :param kms_encryption_key_arn: encrypt the objects with this KMS key (SSE-KMS).
    :param canned_acl: the objects' canned ACL.
    :param cache_control: the objects' Cache-Control header.
    """

    aws_hook_class = S3Hook
    template_fields: Sequence[str] = aws_template_fields(
        "bucket_name", "source", "extract", "object_key", "kms_encryption_key_arn", "canned_acl", "cache_control"
    )
    ui_color = "#fdf0e0"
    operator_extra_links = (S3DeployLink(),)

    def __init__(
        self,
        *,
        bucket_name: str,
        source: str | None = None,
        extract: bool | str = True,
        object_key: str | None = None,
        kms_encryption_key_arn: str | None = None,
        canned_acl: str | None = None,
        cache_control: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.source = source
        self.extract = extract
        self.object_key = object_key
        self.kms_encryption_key_arn = kms_encryption_key_arn
        self.canned_acl = canned_acl
        self.cache_control = cache_control
        # Set by on_kill (from the SIGTERM handler, while execute runs): put no further object.
        self._killed = False

    def object_args(self) -> dict[str, str]:
        """What every object put here carries besides its content type."""
        args = {}
        if self.cache_control:
            args["CacheControl"] = str(self.cache_control)
        if self.canned_acl:
            args["ACL"] = str(self.canned_acl)
        if self.kms_encryption_key_arn:
            args["ServerSideEncryption"] = "aws:kms"
            args["SSEKMSKeyId"] = str(self.kms_encryption_key_arn)
        return args

    def execute(self, context: Context) -> dict[str, Any]:
        if self.input_names:  # the input artifact is what is deployed
            artifact = self.input_artifact(context)
            source_bucket, source_key = artifact.bucket, artifact.key
        else:
            source_bucket, source_key = parse_s3_uri(self.source or "")
        extract = self.extract if isinstance(self.extract, bool) else str(self.extract).lower() != "false"
        prefix = str(self.object_key or "").strip("/") if extract else str(self.object_key or "")
        if not extract and not prefix:
            raise ArtifactError("object_key is required when extract is false: it is the key the zip is put at")
        folder = prefix if extract else posixpath.dirname(prefix)
        link = {
            "region_name": self.hook.conn_region_name,
            "aws_partition": self.hook.conn_partition,
            "bucket": str(self.bucket_name),
            "prefix": f"{folder.strip('/')}/" if folder.strip("/") else "",
        }
        # Before the objects are put: a failure notice links the folder too.
        S3DeployLink.persist(context=context, operator=self, **link)
        if extract:
            count = self._extract(source_bucket, source_key, prefix)
        else:
            self._copy(source_bucket, source_key, prefix)
            count = 1
        self.log.info(
            "Deployed %d object(s) from s3://%s/%s to s3://%s/%s",
            count,
            source_bucket,
            source_key,
            self.bucket_name,
            prefix,
        )
        return {
            "BucketName": self.bucket_name,
            "ObjectKey": prefix,
            "ObjectCount": str(count),
            "ConsoleUrl": S3DeployLink().format_link(
                aws_domain=S3DeployLink.get_aws_domain(link.pop("aws_partition")), **link
            ),
        }

    def on_kill(self) -> None:
        """Put no further object; the one being put finishes, so no object is left half written."""
        self._killed = True

    def _copy(self, source_bucket: str, source_key: str, key: str) -> None:
        extra = {"ContentType": ZIP_CONTENT_TYPE, "MetadataDirective": "REPLACE", **self.object_args()}
        # The managed copy copies server-side, in parts for large objects.
        with aws_call("CopyObject", f"s3://{source_bucket}/{source_key} to s3://{self.bucket_name}/{key}"):
            self.hook.conn.copy({"Bucket": source_bucket, "Key": source_key}, self.bucket_name, key, ExtraArgs=extra)

    def _extract(self, source_bucket: str, source_key: str, prefix: str) -> int:
        client, where = self.hook.conn, f"s3://{source_bucket}/{source_key}"
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES) as archive_file:
            with aws_call("GetObject", where):
                shutil.copyfileobj(client.get_object(Bucket=source_bucket, Key=source_key)["Body"], archive_file)
            archive_file.seek(0)
            try:
                archive = zipfile.ZipFile(archive_file)
            except zipfile.BadZipFile as err:
                raise ArtifactError(
                    f"{where} is not a zip archive ({err}); use extract: false to copy it as it is"
                ) from err
            with archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                keys = [member_key(prefix, m.filename) for m in members]  # refuse a bad name before putting any
                for written, (member, key) in enumerate(zip(members, keys)):
                    if self._killed:
                        raise DeployStopped(
                            f"Task killed after putting {written} of {len(members)} object(s) from {where} under "
                            f"s3://{self.bucket_name}/{prefix}: the rest were not put (a new try puts them all)"
                        )
                    extra = {"ContentType": content_type(member.filename), **self.object_args()}
                    try:
                        with archive.open(member) as body, aws_call("PutObject", f"s3://{self.bucket_name}/{key}"):
                            client.upload_fileobj(body, self.bucket_name, key, ExtraArgs=extra)
                    except (zipfile.BadZipFile, zlib.error) as err:
                        raise ArtifactError(
                            f"{where}: cannot read {member.filename!r} from the archive: {err}"
                        ) from err
                    self.log.info(
                        "Put s3://%s/%s (%s, %d bytes)", self.bucket_name, key, extra["ContentType"], member.file_size
                    )
        return len(members)
