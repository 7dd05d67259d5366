"""Small parsers shared by the loader, the validator, the action-type table and the compiler."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

# Pipeline, stage and action names, as in CodePipeline.
NAME_RE = re.compile(r"^[A-Za-z0-9.@_-]{1,100}$")
# Namespaces and variable names.
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9@_-]{1,100}$")
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z0-9@_-]{1,128}$")

# #{Namespace.Variable}: the same syntax as CodePipeline, so imported specs keep their references.
REFERENCE_RE = re.compile(r"#\{([A-Za-z0-9@_-]+)\.([A-Za-z0-9@_-]+)\}")

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """Parse "30m", "12h", "7d", "1d12h" (days, hours, minutes, seconds, in that order). Raises ValueError."""
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"invalid duration {text!r}; use e.g. '30m', '12h', '7d' or '1d12h'")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def iter_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside a configuration value, nested included, with its path ("env[0].value")."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_strings(key, path)  # keys can hold references too
            yield from iter_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from iter_strings(item, f"{path}[{index}]")


def find_references(value: Any) -> list[tuple[str, str]]:
    """All #{Namespace.Variable} references in a value (string, or nested dicts/lists), in order of appearance."""
    return [(m.group(1), m.group(2)) for _, text in iter_strings(value) for m in REFERENCE_RE.finditer(text)]


def has_reference(value: Any) -> bool:
    return isinstance(value, str) and REFERENCE_RE.search(value) is not None


def did_you_mean(name: str, options) -> str:
    """' (did you mean 'run_order'?)' for a near miss such as 'runOrder', else ''."""

    def norm(s: str) -> str:
        return s.lower().replace("_", "").replace("-", "")

    by_norm = {norm(o): o for o in options if isinstance(o, str)}  # a nameless action's name is None
    close = difflib.get_close_matches(norm(str(name)), list(by_norm), n=1, cutoff=0.6)
    return f" (did you mean '{by_norm[close[0]]}'?)" if close else ""


def airflow_key(name: str) -> str:
    """Spec names allow '.' and '@'; Airflow DAG, group and task ids do not: they become '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)
