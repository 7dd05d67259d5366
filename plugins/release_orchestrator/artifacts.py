"""Reading and writing a run's artifacts in the artifact store (the layout is pipeline/artifacts.py's).

An operator whose action passes artifacts mixes in `PassesArtifacts`; the compiler hands it `artifacts`
(pipeline/artifacts.py's artifact_kwargs). Keys are fixed by the pipeline, the run and the artifact's name,
so a retried action overwrites its own output and a consumer finds it without asking anyone. What an
action read and wrote is in its XCom ``artifacts`` ({"inputs": {name: s3 URI}, "outputs": {...}}).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from release_orchestrator.hooks.base import aws_call
from release_orchestrator.pipeline.files import artifact_file, read_spec_file

ARTIFACTS_XCOM_KEY = "artifacts"


@dataclass(frozen=True)
class ArtifactLocation:
    name: str
    bucket: str
    key: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def bucket_and_key(self) -> str:
        """CodeBuild's S3 source location form: bucket/key."""
        return f"{self.bucket}/{self.key}"


def run_folder(run_id: str) -> str:
    """A run's folder name: its id in S3-safe characters, plus a short hash so two ids never share one."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")[:80]
    return f"{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def location(store: str, dag_id: str, run_id: str, name: str) -> ArtifactLocation:
    bucket, _, prefix = store.removeprefix("s3://").rstrip("/").partition("/")
    key = "/".join(part for part in (prefix, dag_id, run_folder(run_id), f"{name}.zip") if part)
    return ArtifactLocation(name, bucket, key)


def zip_files(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, content in sorted(files.items()):
            archive.writestr(path, content)
    return buffer.getvalue()


def without_top_folder(archive: str, target: str) -> int:
    """Rewrite a GitHub zipball (everything under one `owner-repo-sha/` folder) with its files at the root, as
    CodePipeline's CODE_ZIP, file to file, one member at a time; returns the number of files."""
    count = 0
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            _, _, path = info.filename.partition("/")
            if info.is_dir() or not path:
                continue
            with source.open(info) as member, out.open(zipfile.ZipInfo(path, info.date_time), "w") as copy:
                shutil.copyfileobj(member, copy, 1024 * 1024)
            count += 1
    return count


class PassesArtifacts:
    """For operators: the run's input artifacts (in this action's region) and where its outputs go."""

    def __init__(self, *, artifacts: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.artifacts = artifacts or {}
        self._artifacts_used: dict[str, dict[str, str]] = {"inputs": {}, "outputs": {}}

    @property
    def input_names(self) -> list[str]:
        return [item["name"] for item in self.artifacts.get("inputs") or []]

    @property
    def output_names(self) -> list[str]:
        return [item["name"] for item in self.artifacts.get("outputs") or []]

    def _s3(self, region: str | None) -> Any:
        return S3Hook(aws_conn_id=self.artifacts.get("aws_conn_id"), region_name=region).conn

    @property
    def encryption(self) -> dict[str, str]:
        """What every object this action writes to its store carries: SSE-KMS with the store's key, if it has one."""
        key = self.artifacts.get("kms_key")
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key} if key else {}

    def input_artifact(self, context: Any, name: str | None = None) -> ArtifactLocation:
        """Where input artifact `name` (default: the first) is in this action's store; an artifact its
        producer wrote to another region's store is copied here first (once: a retry finds the copy)."""
        item = next(i for i in self.artifacts["inputs"] if name in (None, i["name"]))
        dag_id, run_id = context["dag_run"].dag_id, context["dag_run"].run_id
        here = location(self.artifacts["store"], dag_id, run_id, item["name"])
        there = location(item["store"], dag_id, self.producing_run(context, item), item["name"])
        client = self._s3(self.artifacts.get("region"))
        if here != there:
            with aws_call("CopyObject", f"artifact '{item['name']}' from {there.uri} to {here.uri}"):
                client.copy_object(
                    Bucket=here.bucket,
                    Key=here.key,
                    CopySource={"Bucket": there.bucket, "Key": there.key},
                    **self.encryption,
                )
            self.log.info("Copied input artifact %s from %s to this region's store: %s", here.name, there.uri, here.uri)
        with aws_call("HeadObject", f"input artifact '{item['name']}' at {here.uri}"):
            head = client.head_object(Bucket=here.bucket, Key=here.key)
        found = ArtifactLocation(here.name, here.bucket, here.key, head.get("VersionId"))
        self._record(context, "inputs", found)
        return found

    @staticmethod
    def producing_run(context: Any, item: dict[str, Any]) -> str:
        """The run whose producer wrote input `item`: this one, or in a rollback run the run it rolls back to
        (stages/rollback.py), whose artifact is copied into this run's folder like one from another region."""
        from release_orchestrator.stages.rollback import results_run

        producer = item.get("producer")
        return results_run(context, producer) if producer else context["dag_run"].run_id

    def read_input_file(self, context: Any, name: str, path: str) -> bytes:
        """A file inside input artifact `name` (a zip), e.g. the task definition template of an ECS deployment."""
        if name not in self.input_names:
            raise ValueError(f"'{name}::{path}' names no input artifact of this action; its inputs: {self.input_names}")
        cache = self.__dict__.setdefault("_input_zips", {})
        if name not in cache:
            # On disk, not in memory: a bundle can be large, and only a few of its files are read.
            where = self.input_artifact(context, name)
            extra = {"VersionId": where.version_id} if where.version_id else {}
            cache[name] = tempfile.TemporaryFile()
            with aws_call("GetObject", f"input artifact '{name}' at {where.uri}"):
                self._s3(self.artifacts.get("region")).download_fileobj(
                    where.bucket, where.key, cache[name], ExtraArgs=extra or None
                )
        try:
            cache[name].seek(0)
            with zipfile.ZipFile(cache[name]) as archive:
                return archive.read(path)
        except KeyError:
            raise ValueError(f"input artifact '{name}' has no file {path!r}") from None
        except zipfile.BadZipFile:
            raise ValueError(f"input artifact '{name}' is not a zip, so it has no file {path!r}") from None

    def load_artifact_files(self, context: Any, keys: tuple[str, ...]) -> None:
        """Read, once per try, the files that configuration `keys` name in input artifacts ('Artifact::path'),
        for `file_text` to hand out where the operator reads its files."""
        texts = self.__dict__.setdefault("_artifact_texts", {})
        for key in keys:
            if named := artifact_file(getattr(self, key, None)):
                texts[key] = self.read_input_file(context, *named).decode()

    def file_text(self, value: str, key: str, spec_folder: str | None) -> str:
        """The text of the file configuration `key` names: in an input artifact, or in the spec's folder."""
        if artifact_file(value):
            texts = self.__dict__.get("_artifact_texts", {})
            if key not in texts:
                raise ValueError(f"{key}: {value} is read from an input artifact when the action runs")
            return texts[key]
        return read_spec_file(value, spec_folder, key)

    def output_artifact(self, context: Any, name: str | None = None) -> ArtifactLocation:
        """Where output artifact `name` (default: the first) goes, for a service that writes it itself."""
        item = next(i for i in self.artifacts["outputs"] if name in (None, i["name"]))
        dag_id, run_id = context["dag_run"].dag_id, context["dag_run"].run_id
        return location(self.artifacts["store"], dag_id, run_id, item["name"])

    def put_output(self, context: Any, body: bytes, name: str | None = None) -> ArtifactLocation:
        target = self.output_artifact(context, name)
        with aws_call("PutObject", f"output artifact '{target.name}' at {target.uri}"):
            put = self._s3(self.artifacts.get("region")).put_object(
                Bucket=target.bucket, Key=target.key, Body=body, **self.encryption
            )
        written = ArtifactLocation(target.name, target.bucket, target.key, put.get("VersionId"))
        self.log.info("Wrote output artifact %s: %s (%d bytes)", written.name, written.uri, len(body))
        self.record_output(context, written)
        return written

    def put_output_file(self, context: Any, path: str, name: str | None = None) -> ArtifactLocation:
        """Upload the file at `path` as an output artifact (multipart when large)."""
        target = self.output_artifact(context, name)
        client = self._s3(self.artifacts.get("region"))
        with aws_call("PutObject", f"output artifact '{target.name}' at {target.uri}"):
            client.upload_file(path, target.bucket, target.key, ExtraArgs=self.encryption or None)
            head = client.head_object(Bucket=target.bucket, Key=target.key)
        written = ArtifactLocation(target.name, target.bucket, target.key, head.get("VersionId"))
        self.log.info("Wrote output artifact %s: %s (%d bytes)", written.name, written.uri, head["ContentLength"])
        self.record_output(context, written)
        return written

    def record_locations(self, context: Any) -> None:
        """Record where this action's artifacts are, for those not recorded yet (a try that reattached to
        the work of an earlier one did not read or write them itself)."""
        if not self.artifacts:
            return
        dag_id, run_id = context["dag_run"].dag_id, context["dag_run"].run_id
        for direction in ("inputs", "outputs"):
            for item in self.artifacts.get(direction) or []:
                if item["name"] not in self._artifacts_used[direction]:
                    self._record(context, direction, location(self.artifacts["store"], dag_id, run_id, item["name"]))

    def record_output(self, context: Any, written: ArtifactLocation) -> None:
        self._record(context, "outputs", written)

    def _record(self, context: Any, direction: str, where: ArtifactLocation) -> None:
        described = where.uri + (f"?versionId={where.version_id}" if where.version_id else "")
        self._artifacts_used[direction][where.name] = described
        context["ti"].xcom_push(key=ARTIFACTS_XCOM_KEY, value=self._artifacts_used)
