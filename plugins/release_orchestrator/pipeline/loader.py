"""Reading pipeline specs: YAML text -> model, with file:line for every problem.

The loader checks shape only (known fields, value types); validate.py checks meaning. load_spec and friends
run both and raise one SpecError listing every problem found.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError
from .model import Action, Notifications, Pipeline, Stage, Variable
from .syntax import did_you_mean
from .validate import validate

SPEC_SUFFIXES = (".yaml", ".yml")
log = logging.getLogger(__name__)


# --- YAML with line numbers ---------------------------------------------------------------------------------


class _Map(dict):
    """A mapping that remembers where it and each of its keys start (1-based lines)."""

    line: int = 0
    key_lines: dict


class _Seq(list):
    line: int = 0
    item_lines: list


# libyaml's C parser when PyYAML has it: about 8x faster than the pure-Python one on big spec sets.
class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    def __init__(self, stream):
        super().__init__(stream)
        self.duplicate_keys: list[tuple[str, int]] = []


def _construct_map(loader: _LineLoader, node: yaml.MappingNode):
    data = _Map()
    data.line, data.key_lines = node.start_mark.line + 1, {}
    yield data
    # A key written twice silently keeps the last value in plain YAML; report it instead (merge keys aside).
    seen = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                loader.duplicate_keys.append((key_node.value, key_node.start_mark.line + 1))
            seen.add(key_node.value)
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode):
    data = _Seq()
    data.line, data.item_lines = node.start_mark.line + 1, [n.start_mark.line + 1 for n in node.value]
    yield data
    data.extend(loader.construct_object(n, deep=True) for n in node.value)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


# --- bounds: what a spec's YAML may cost before anything reads it ------------------------------------------

# Nesting deeper than this is refused before it is built: the constructor, the validator and Airflow's
# serialization all recurse, and a real spec is about 10 levels deep (pipeline.stages[i].actions[j].
# configuration.env[k].value).
MAX_DEPTH = 32
# What aliases (*name) may add to a spec, counted in nodes plus the characters of each scalar they repeat.
# A spec that uses anchors for shared settings adds a few thousand; a "billion laughs" of 569 bytes adds
# millions, which every later step (copying, validating, error messages) would pay for.
MAX_ALIAS_EXPANSION = 100_000


def _children(node: yaml.Node) -> list[tuple[yaml.Node, Any]]:
    """A node's children, each with its step in the path: its key (a mapping's value), its index (an item),
    or None (a mapping's key, which is no step of its own)."""
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[yaml.Node, Any]] = []
        for key, value in node.value:
            out += [(key, None), (value, key.value if isinstance(key, yaml.ScalarNode) else "?")]
        return out
    if isinstance(node, yaml.SequenceNode):
        return list(zip(node.value, range(len(node.value))))
    return []


class _Frame:
    """A collection on the path from the root, in _check_bounds' walk."""

    __slots__ = ("node", "step", "children", "next", "total", "extra")

    def __init__(self, node: yaml.Node, step: Any):
        self.node, self.step, self.children, self.next = node, step, _children(node), 0
        self.total = 1  # this node's size with every alias expanded
        self.extra = 0  # what aliases add to it


def _check_bounds(root: yaml.Node, source: str) -> SpecError | None:
    """The composed document's first breach of MAX_DEPTH, MAX_ALIAS_EXPANSION or a recursive alias, or None.

    The node graph holds each anchored node once, with every alias pointing at it, so this walk (not
    recursive, each node visited once) costs the size of the text while it adds up the size of the expansion.
    """
    done: dict[int, int] = {}  # id(node) -> its expanded size, once read
    stack = [_Frame(root, None)]
    while stack:
        frame = stack[-1]
        if frame.next == len(frame.children):
            stack.pop()
            done[id(frame.node)] = frame.total
            if frame.extra > MAX_ALIAS_EXPANSION:  # the innermost value over the budget: where to look
                return _bound_error(
                    f"YAML aliases (*name) expand this value to {frame.total:,} nodes and characters, more than "
                    f"the {MAX_ALIAS_EXPANSION:,} allowed beyond the text; write the values out or use fewer aliases",
                    frame.node,
                    [*stack, frame],
                    source,
                )
            if stack:
                stack[-1].total += frame.total
                stack[-1].extra += frame.extra
            continue
        child, step = frame.children[frame.next]
        frame.next += 1
        if id(child) in done:  # an alias of a value read before: all of it again
            frame.total += done[id(child)]
            frame.extra += done[id(child)]
        elif isinstance(child, yaml.ScalarNode):
            done[id(child)] = 1 + len(child.value)
            frame.total += done[id(child)]
        elif any(f.node is child for f in stack):
            return _bound_error(
                "a YAML alias refers to a value that contains it", child, [*stack, _Frame(child, step)], source
            )
        elif len(stack) >= MAX_DEPTH:
            return _bound_error(f"nested deeper than {MAX_DEPTH} levels", child, [*stack, _Frame(child, step)], source)
        else:
            stack.append(_Frame(child, step))
    return None


def _bound_error(message: str, node: yaml.Node, frames: list[_Frame], source: str) -> SpecError:
    """The error at `node` (inside `frames`), named by stage, action and field as the parser would."""
    nodes = [f.node for f in frames[1:]]
    steps = [f.step for f in frames[1:]]
    context: dict[str, Any] = {}
    if steps[:1] == ["pipeline"]:
        nodes, steps = nodes[1:], steps[1:]
        if steps[:1] == ["stages"] and len(steps) > 1 and isinstance(nodes[1], yaml.MappingNode):
            context["stage"] = _name_of(nodes[1])
            nodes, steps = nodes[2:], steps[2:]
            if steps[:1] == ["actions"] and len(steps) > 1 and isinstance(nodes[1], yaml.MappingNode):
                context["action"] = _name_of(nodes[1])
                steps = steps[2:]
    path = ""
    for step in steps:
        if isinstance(step, int):
            path += f"[{step}]"
        elif step is not None:
            path += f".{step}" if path else str(step)
    return SpecError(message, file=source, line=node.start_mark.line + 1, field=path or None, **context)


def _name_of(node: yaml.Node) -> str | None:
    """The `name:` of a stage or action node, if it is written as a plain value."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "name" and isinstance(value, yaml.ScalarNode):
                return value.value
    return None


def _plain(value: Any, path: str, lines: dict[str, int]) -> Any:
    """Plain dicts/lists for the model, with each nested key's line recorded under its path."""
    if isinstance(value, _Map):
        out = {}
        for key, item in value.items():
            sub = f"{path}.{key}"
            lines[sub] = value.key_lines.get(key, value.line)
            out[key] = _plain(item, sub, lines)
        return out
    if isinstance(value, _Seq):
        out = []
        for index, item in enumerate(value):
            sub = f"{path}[{index}]"
            lines[sub] = value.item_lines[index]
            out.append(_plain(item, sub, lines))
        return out
    return value


# --- fields and their types ---------------------------------------------------------------------------------

_SCALAR = (str, int, float, bool)
_PIPELINE_FIELDS = {
    "name": str,
    "description": str,
    "execution_mode": str,
    "supersede_approvals": bool,
    "schedule": str,
    "variables": list,
    "triggers": list,
    "notifications": dict,
    "artifact_store": (str, dict),
    "artifact_kms_key": (str, dict),
    "aws_conn_id": str,
    "region": str,
    "tags": list,
    "preflight": bool,
    "stages": list,
}
_VARIABLE_FIELDS = {"name": str, "default": _SCALAR, "description": str}
_NOTIFICATION_FIELDS = {"topic_arn": str, "events": list, "aws_conn_id": str}
_STAGE_FIELDS = {"name": str, "actions": list, "before_entry": dict, "on_failure": dict, "on_success": dict}
_ACTION_FIELDS = {
    "name": str,
    "type": str,
    "run_order": int,
    "namespace": str,
    "configuration": dict,
    "input_artifacts": list,
    "output_artifacts": list,
    "region": str,
    "aws_conn_id": str,
    "timeout_minutes": int,
}
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
    type(None): "nothing",
}


def _describe(value: Any) -> str:
    for t in (bool, int, float, str, list, dict, type(None)):  # bool before int: True is an int too
        if isinstance(value, t):
            return _TYPE_NAMES[t]
    return type(value).__name__


def _expected(types) -> str:
    types = _as_tuple(types)
    return "a plain value" if types == _SCALAR else " or ".join(_TYPE_NAMES[t] for t in types)


class _Parser:
    def __init__(self, source: str):
        self.source = source
        self.errors: list[SpecError] = []

    def error(self, message: str, line: int | None, **context) -> None:
        self.errors.append(SpecError(message, file=self.source, line=line, **context))

    def fields(
        self, mapping: Any, spec: dict, where: str, required: tuple = (), at: tuple = (None, None), **context
    ) -> dict:
        """The known fields of `mapping` whose values have the right type; reports the others.

        A field set to nothing (`schedule:` or `schedule: null`) counts as not given. `at` is the (line, field)
        to name when `mapping` is a plain value, which knows neither.
        """
        prefix = f"{where}." if where else ""
        if not isinstance(mapping, dict):
            self.error(
                f"expected a mapping with {', '.join(spec)}, got {_describe(mapping)}",
                getattr(mapping, "line", None) or at[0],
                field=where or at[1],
                **context,
            )
            return {}
        out = {}
        for key, value in mapping.items():
            line = mapping.key_lines.get(key, mapping.line)
            if key not in spec:
                self.error(
                    f"unknown field '{prefix}{key}'{did_you_mean(key, spec)}; allowed fields: {', '.join(spec)}",
                    line,
                    **context,
                )
            elif value is None:
                continue
            elif not isinstance(value, spec[key]) or (isinstance(value, bool) and bool not in _as_tuple(spec[key])):
                hint = " (quote it to make it a string)" if spec[key] is str and isinstance(value, _SCALAR) else ""
                self.error(
                    f"expected {_expected(spec[key])}, got {_describe(value)}{hint}",
                    line,
                    field=prefix + key,
                    **context,
                )
            else:
                out[key] = value
        for key in required:
            if mapping.get(key) is None:
                self.error(
                    f"missing required field; allowed fields: {', '.join(spec)}",
                    mapping.line,
                    field=prefix + key,
                    **context,
                )
        return out

    def strings(self, values: list, where: str, **context) -> list[str]:
        """A list that must hold strings (tags, artifact names, notification events)."""
        out = []
        for index, item in enumerate(values):
            if isinstance(item, str):
                out.append(item)
            else:
                self.error(
                    f"expected a string, got {_describe(item)}",
                    values.item_lines[index],
                    field=f"{where}[{index}]",
                    **context,
                )
        return out

    def pipeline(self, document: Any) -> Pipeline | None:
        if document is None:
            self.error("empty spec; expected a top-level 'pipeline:' mapping", 1)
            return None
        top = self.fields(document, {"pipeline": dict}, "", required=("pipeline",), at=(1, None))
        if "pipeline" not in top:
            return None
        node = top["pipeline"]
        f = self.fields(node, _PIPELINE_FIELDS, "", required=("name", "stages"), at=(1, "pipeline"))
        lines = _lines_of(node, skip=("stages",))
        p = Pipeline(name=f.get("name"), source_file=self.source, lines=lines)
        for key in (
            "description",
            "execution_mode",
            "supersede_approvals",
            "schedule",
            "artifact_store",
            "aws_conn_id",
            "region",
            "preflight",
        ):
            if key in f:
                setattr(p, key, f[key])
        for key in ("artifact_store", "artifact_kms_key"):
            if isinstance(f.get(key), dict):
                setattr(p, key, _plain(f[key], key, p.lines))
            elif key in f:
                setattr(p, key, f[key])
        if "tags" in f:
            p.tags = self.strings(f["tags"], "tags")
        if "triggers" in f:
            p.triggers = _plain(f["triggers"], "triggers", {})
        for index, item in enumerate(f.get("variables", [])):
            where = f"variables[{index}]"
            v = self.fields(item, _VARIABLE_FIELDS, where, required=("name",), at=(f["variables"].item_lines[index],))
            default = v.get("default")
            p.variables.append(
                Variable(
                    name=v.get("name"),
                    description=v.get("description", ""),
                    default=_scalar_text(default) if default is not None else None,
                )
            )
        if "notifications" in f:
            n = self.fields(f["notifications"], _NOTIFICATION_FIELDS, "notifications", required=("topic_arn",))
            p.notifications = Notifications(topic_arn=n.get("topic_arn"), aws_conn_id=n.get("aws_conn_id"))
            if "events" in n:
                p.notifications.events = self.strings(n["events"], "notifications.events")
        for index, item in enumerate(f.get("stages", [])):
            p.stages.append(self.stage(item, (f["stages"].item_lines[index], f"stages[{index}]")))
        return p

    def stage(self, node: Any, at: tuple) -> Stage:
        """`at`: the (line, field) of the stage's place in `stages`."""
        name = node.get("name") if isinstance(node, dict) else None
        context = {"stage": name if isinstance(name, str) else None}
        f = self.fields(node, _STAGE_FIELDS, "", required=("name", "actions"), at=at, **context)
        stage = Stage(name=f.get("name"), line=getattr(node, "line", None) or at[0])
        if isinstance(node, dict):
            stage.lines = _lines_of(node, skip=("actions",))
        for key in ("before_entry", "on_failure", "on_success"):
            if key in f:
                setattr(stage, key, _plain(f[key], key, {}))
        for index, item in enumerate(f.get("actions", [])):
            stage.actions.append(self.action(item, (f["actions"].item_lines[index], f"actions[{index}]"), **context))
        return stage

    def action(self, node: Any, at: tuple, **context) -> Action:
        """`at`: the (line, field) of the action's place in its stage's `actions`."""
        name = node.get("name") if isinstance(node, dict) else None
        context["action"] = name if isinstance(name, str) else None
        f = self.fields(node, _ACTION_FIELDS, "", required=("name", "type"), at=at, **context)
        lines = _lines_of(node) if isinstance(node, dict) else {}
        line = getattr(node, "line", None) or at[0]
        action = Action(name=f.get("name"), type=f.get("type"), line=line, lines=lines)
        for key in ("run_order", "namespace", "region", "aws_conn_id", "timeout_minutes"):
            if key in f:
                setattr(action, key, f[key])
        for key in ("input_artifacts", "output_artifacts"):
            if key in f:
                setattr(action, key, self.strings(f[key], key, **context))
        if "configuration" in f:
            action.configuration = _plain(f["configuration"], "configuration", {})
        return action


def _lines_of(node: _Map, skip: tuple = ()) -> dict[str, int]:
    """Line of every field and nested value under `node`, by path ("configuration.env[0].name")."""
    lines = {}
    for key, value in node.items():
        lines[key] = node.key_lines[key]
        if key not in skip:
            _plain(value, key, lines)
    return lines


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def _scalar_text(value: Any) -> str:
    # Variable values are strings, as in CodePipeline; `default: 3` means "3" and `default: true` means "true".
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- public API ---------------------------------------------------------------------------------------------


def parse_spec_text(text: str, source: str = "<string>") -> tuple[Pipeline | None, list[SpecError]]:
    """Parse and validate without raising: the model (None when unusable) and every problem found."""
    try:
        loader = _LineLoader(text)
    except UnicodeEncodeError as e:  # a str holding a lone surrogate (no file can hold one): libyaml reads UTF-8
        return None, [SpecError(f"invalid YAML: not valid Unicode ({e.reason} at character {e.start})", file=source)]
    try:
        # Composing reads the text into nodes, an alias being one more reference to its anchor's node;
        # only a document within the bounds is then built into values.
        node = loader.get_single_node()
        if node is not None and (breach := _check_bounds(node, source)) is not None:
            return None, [breach]
        document = loader.construct_document(node) if node is not None else None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow; it says where, not on which line
        # libyaml counts the position in bytes of UTF-8, PyYAML's own reader in characters
        before = text.encode("utf-8")[: e.position].decode("utf-8", "ignore") if yaml.__with_libyaml__ else text
        line = before.count("\n", 0, e.position) + 1
        character = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        return None, [SpecError(f"invalid YAML: character {character}: {e.reason}", file=source, line=line)]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        return None, [SpecError(f"invalid YAML: {problem}", file=source, line=mark.line + 1 if mark else None)]
    except RecursionError:  # PyYAML without libyaml composes recursively, before the depth can be checked
        return None, [SpecError(f"invalid YAML: nested deeper than {MAX_DEPTH} levels", file=source)]
    finally:
        loader.dispose()

    parser = _Parser(source)
    for key, line in loader.duplicate_keys:
        parser.error(f"key '{key}' is given twice", line)
    pipeline = parser.pipeline(document)
    errors = parser.errors
    if pipeline is not None:
        # The validator would repeat what the loader already said about a field (e.g. a missing name).
        reported = {(e.stage, e.action, e.field) for e in errors}
        errors += [e for e in validate(pipeline) if (e.stage, e.action, e.field) not in reported]
    errors.sort(key=lambda e: e.line or 0)
    return pipeline, errors


def load_spec_text(text: str, source: str = "<string>") -> Pipeline:
    """The validated pipeline described by `text`; raises SpecError listing every problem."""
    pipeline, errors = parse_spec_text(text, source)
    if errors:
        raise SpecError.combine(errors)
    return pipeline


def load_spec(path: str | os.PathLike) -> Pipeline:
    """The validated pipeline in the spec file at `path`; raises SpecError listing every problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read spec: {e}", file=str(path)) from e
    return load_spec_text(text, source=str(path))


def spec_files(directory: str | os.PathLike) -> list[Path]:
    """The spec files in `directory` (not its subdirectories, which may hold task definitions and the like)."""
    return sorted(p for p in Path(directory).iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())


def load_specs(paths: str | os.PathLike | list) -> tuple[list[Pipeline], dict[str, SpecError]]:
    """Every pipeline in a directory (or a list of files/directories), and the error of each file that failed.

    One bad file never hides the others. Two files may not use the same pipeline name: the later file (in
    sorted order) gets the error, naming the earlier one.
    """
    files: list[Path] = []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        files += spec_files(path) if Path(path).is_dir() else [Path(path)]

    pipelines: list[Pipeline] = []
    errors: dict[str, SpecError] = {}
    first_file: dict[str, str] = {}
    for file in files:
        try:
            pipeline = load_spec(file)
        except SpecError as e:
            errors[str(file)] = e
            continue
        except Exception as e:  # noqa: BLE001 - a defect of ours on this file must not hide the other pipelines
            log.exception("reading spec %s failed", file)
            errors[str(file)] = SpecError(
                f"could not be read ({type(e).__name__}: {str(e)[:200]}); this is a defect of the release "
                "orchestrator, not of the spec: please report it with the spec",
                file=str(file),
            )
            continue
        if pipeline.name in first_file:
            errors[str(file)] = SpecError(
                f"pipeline name '{pipeline.name}' is already used by {first_file[pipeline.name]}",
                file=str(file),
                line=pipeline.lines.get("name"),
                field="name",
            )
            continue
        first_file[pipeline.name] = str(file)
        pipelines.append(pipeline)
    return pipelines, errors
