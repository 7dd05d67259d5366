"""Command line: `python -m release_orchestrator <command>` (with plugins/ on PYTHONPATH).

validate [dir-or-file ...]                       check specs (default: the spec directories); exit 1 on errors
import-codepipeline pipeline.json [-o out.yaml]  write a spec for a CodePipeline definition
action-types                                     print the action-type reference (Markdown)
schema [-o pipeline-spec.schema.json]            print or write the JSON Schema of specs (editor completion)
settings                                         print every setting: variable, default, what it sets
events-setup [--dry-run] [dir ...]               route S3/ECR/CodeCommit change events to the events queue
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from release_orchestrator.pipeline.action_types import reference_markdown
from release_orchestrator.pipeline.importer import ImportInputError, import_codepipeline, read_codepipeline_json
from release_orchestrator.pipeline.loader import load_specs
from release_orchestrator.pipeline.schema import schema_json
from release_orchestrator.settings import markdown_table, pipelines_dirs

# import-codepipeline exit codes
EXIT_OK, EXIT_UNREADABLE, EXIT_INCOMPLETE = 0, 1, 3


def cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or pipelines_dirs()
    pipelines, errors = load_specs(paths)
    for p in pipelines:
        print(f"ok: {p.source_file}: pipeline '{p.name}'")
    for error in errors.values():
        print(error, file=sys.stderr)
    if not pipelines and not errors:
        print(f"no spec files (*.yaml, *.yml) in {', '.join(map(str, paths))}", file=sys.stderr)
    return 1 if errors else 0


def cmd_import(args: argparse.Namespace) -> int:
    try:
        result = import_codepipeline(read_codepipeline_json(args.file), source=args.file)
    except ImportInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.output:
        Path(args.output).write_text(result.yaml, encoding="utf-8")
        print(f"wrote {args.output}: pipeline '{result.name}'", file=sys.stderr)
    else:
        sys.stdout.write(result.yaml)

    def section(title: str, lines) -> None:
        lines = [str(line) for line in lines]
        if lines:
            print(f"\n{title}:", *(f"  {line}" for line in lines), sep="\n", file=sys.stderr)

    section("Not imported", result.unmapped)
    section(
        "Airflow connections to create", [f"{conn_id}: assumes {arn}" for conn_id, arn in result.connections.items()]
    )
    section("Review", result.notes)
    section("The written spec does not validate yet", result.errors)
    return EXIT_OK if result.complete else EXIT_INCOMPLETE


def cmd_schema(args: argparse.Namespace) -> int:
    text = schema_json()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m release_orchestrator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="`<command> --help` describes each command",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check pipeline specs; exit 1 if any has a problem")
    validate.add_argument(
        "paths",
        nargs="*",
        help="spec files or directories (default: $RELEASE_ORCHESTRATOR_PIPELINES_DIR, else include/pipelines)",
    )
    validate.set_defaults(run=cmd_validate)

    importer = commands.add_parser(
        "import-codepipeline",
        help="write a spec for an AWS CodePipeline definition; exit 3 if not everything "
        "could be imported, 1 if the input cannot be read",
    )
    importer.add_argument("file", help="JSON of `aws codepipeline get-pipeline`")
    importer.add_argument("-o", "--output", help="spec file to write (default: standard output)")
    importer.set_defaults(run=cmd_import)

    types = commands.add_parser("action-types", help="print the action-type reference as Markdown")
    types.set_defaults(run=lambda args: print(reference_markdown()) or 0)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of pipeline specs, for editor completion and checks (yaml-language-server)",
    )
    schema.add_argument("-o", "--output", help="file to write (default: standard output)")
    schema.set_defaults(run=cmd_schema)

    listed = commands.add_parser("settings", help="print every setting as a Markdown table (docs/settings.md)")
    listed.set_defaults(run=lambda args: print(markdown_table()) or 0)

    events = commands.add_parser(
        "events-setup",
        add_help=False,
        help="create the events queue and the EventBridge rules that route the "
        "specs' S3/ECR/CodeCommit changes to it (`events-setup --help`)",
    )
    events.add_argument("arguments", nargs="*", help="those of `python -m release_orchestrator.events setup`")

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["events-setup"]:  # its own parser reads the rest, --help included
        return events_setup(argv[1:])
    args = parser.parse_args(argv)
    return args.run(args)


def events_setup(arguments: list[str]) -> int:
    from release_orchestrator.events.setup import main as events_main  # imports boto3: only for this command

    return events_main(["setup", *arguments])


if __name__ == "__main__":
    sys.exit(main())
