"""Files a spec names (an ECS task definition template): they live in the spec's folder.

A spec may name a file only by a path relative to its own folder, and the file must stay inside
that folder once `..` and symbolic links are followed: a spec author cannot make the worker read
/etc/passwd or another team's files. `validate` refuses anything else (naming the field), the
compiler checks again, and the operator checks once more right before it reads, since a link can
change between the DAG's parse and the task's run.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .syntax import has_reference


class SpecFileError(ValueError):
    pass


_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A file inside one of the action's input artifacts, as CodePipeline names them: "BuildOutput::taskdef.json".
_ARTIFACT_FILE_RE = re.compile(r"^([A-Za-z0-9_-]{1,100})::(\S.*)$")


def artifact_file(value: object) -> tuple[str, str] | None:
    """(artifact, path in its zip) when a file key's value names a file in an input artifact, else None."""
    match = _ARTIFACT_FILE_RE.match(value.strip()) if isinstance(value, str) else None
    return (match.group(1), match.group(2)) if match else None


def is_file_path(value: object) -> bool:
    """Whether a value of a file key names a file (a string that is neither inline JSON nor a URL such as
    s3://bucket/key)."""
    return (
        isinstance(value, str)
        and value.strip()[:1] not in ("{", "[")
        and not _URL_RE.match(value.strip())
        and artifact_file(value) is None
    )


def read_spec_file(path: str, folder: str | os.PathLike | None, key: str) -> str:
    """The text of the file a worker reads for `key`: checked again right before reading, since a link may
    have changed since the DAG was parsed. No folder (an operator in a DAG file) reads any path."""
    if folder is None:
        return Path(path).read_text()
    try:
        return file_in_folder(path, folder).read_text()
    except SpecFileError as err:
        raise SpecFileError(f"{key}: {err}") from None


def file_in_folder(path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """`path` (relative to `folder`, or absolute) when it stays inside `folder` with links followed;
    SpecFileError otherwise. The file itself need not exist."""
    joined = Path(os.path.abspath(Path(folder) / path))
    real = Path(os.path.realpath(joined))
    if real.is_relative_to(os.path.realpath(folder)):
        return joined
    if Path(os.path.normpath(joined)).is_relative_to(os.path.abspath(folder)):
        raise SpecFileError(f"'{path}' is a symbolic link to {real}, outside the spec's folder {folder}")
    raise SpecFileError(f"'{path}' is outside the spec's folder {folder}; put the file in that folder")


def spec_folder(source_file: str | None) -> str | None:
    """The folder of the spec read from `source_file` (None for a pipeline built without one)."""
    return os.path.dirname(os.path.abspath(source_file)) if source_file else None


def spec_file(path: str, source_file: str | None) -> Path:
    """The file a spec read from `source_file` names as `path`; SpecFileError if it may not."""
    if has_reference(path):
        raise SpecFileError(f"'{path}': a file path cannot hold #{{...}} references; name the file itself")
    if not path.strip():
        raise SpecFileError("the file path is empty")
    if not source_file:
        raise SpecFileError(
            f"'{path}' names a file, but this pipeline was not read from a spec file, so there is no folder "
            "to read it from; give the value inline (a mapping), or the pipeline's source_file"
        )
    folder = spec_folder(source_file)
    if os.path.isabs(path):
        raise SpecFileError(
            f"'{path}' is an absolute path; name a file inside the spec's folder {folder}, relative to it"
        )
    return file_in_folder(path, folder)


def file_problems(keys: list[str], configuration: dict, source_file: str | None) -> list[tuple[str, str]]:
    """(key, message) for each of `keys` whose value names a file the spec may not name."""
    problems = []
    for key in keys:
        value = configuration.get(key)
        if is_file_path(value):
            try:
                spec_file(value, source_file)
            except SpecFileError as err:
                problems.append((key, str(err)))
    return problems


def read_json_file(path: str, folder: str | None, key: str) -> Any:
    """What a worker reads from the JSON file a file key names (see read_spec_file). Errors name the key."""
    try:
        return json.loads(read_spec_file(path, folder, key))
    except SpecFileError:
        raise
    except (OSError, ValueError) as err:
        raise SpecFileError(f"{key}: cannot read {path} as JSON: {err}") from None
