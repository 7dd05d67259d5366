"""Command line: `python -m release_orchestrator <command>` (with plugins/ on PYTHONPATH).

validate [dir-or-file ...]                       check specs (default: the spec directories); exit 1 on errors
import-codepipeline pipeline.json [-o out.yaml]  write a spec for a CodePipeline definition
action-types                                     print the action-type reference (Markdown)
schema [-o pipeline-spec.schema.json]            print or write the JSON Schema of specs (editor completion)
settings                                         print every setting: variable, default, what it sets
events-setup [--dry-run] [dir ...]               route S3/ECR/CodeCommit change events to the events queue
artifact-retention SPEC... --days N [--dry-run]  expire the runs' artifacts after N days (S3 lifecycle rules)
check SPEC... [--aws-conn-id ID | --endpoint-url URL] [--region R] [--json]
                                                 look up every resource the specs' actions name; exit 1 on a failure
iam-policy SPEC [--account-id ID] [--region R]   print the least-privilege IAM policy of a pipeline's actions
transition show PIPELINE                         each stage's transition: enabled, or who disabled it and why
transition disable PIPELINE STAGE --reason TEXT  hold runs at the stage's door until it is enabled again
transition enable PIPELINE STAGE                 let runs into the stage again
retry PIPELINE RUN_ID STAGE [--all-actions]      run a failed stage again (its failed actions, or all)
stop PIPELINE RUN_ID --reason TEXT [--wait]      abandon a run (or --wait: let actions at work finish)
rollback PIPELINE STAGE --reason TEXT [--to RUN_ID]
                                                 redeploy a stage as an earlier run did (default: the latest
                                                 run in which it succeeded), as a run of its own
    (the last five through the release console's API: --airflow-url, --user/--password or --token, or
     AIRFLOW_URL, AIRFLOW_USER/AIRFLOW_PASSWORD, AIRFLOW_TOKEN)
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
    section("Stage rules not carried", result.not_carried)
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


def _load_or_report(paths: list[str]) -> tuple[list, bool]:
    """The pipelines of `paths`; (pipelines, whether any spec was invalid or missing), errors on stderr."""
    pipelines, errors = load_specs(paths)
    for error in errors.values():
        print(error, file=sys.stderr)
    if not pipelines and not errors:
        print(f"no spec files (*.yaml, *.yml) in {', '.join(paths)}", file=sys.stderr)
    return pipelines, bool(errors) or not pipelines


def cmd_check(args: argparse.Namespace) -> int:
    from release_orchestrator.pipeline import preflight  # imports boto3 when it runs: only for this command

    pipelines, invalid = _load_or_report(args.specs)
    if args.endpoint_url:
        access = preflight.Boto3Access(args.endpoint_url, args.region)
    else:
        access = preflight.HookAccess()
    reports, failures = [], 0
    for pipeline in pipelines:
        # Airflow and the provider log to standard output; the table and the JSON own it.
        with contextlib.redirect_stdout(sys.stderr):
            rows = preflight.run_checks(preflight.plan(pipeline, args.aws_conn_id, args.region), access)
        failures += len(preflight.failed(rows))
        reports.append(preflight.as_json(rows, pipeline.name))
        if not args.json:
            print(f"pipeline {pipeline.name} ({pipeline.source_file}):\n{preflight.table(rows)}\n")
    if args.json:
        print(json.dumps(reports, indent=2))
    return 1 if failures or invalid else 0


def cmd_artifact_retention(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from release_orchestrator.pipeline.artifacts import apply_retention, retention_rule, store_folders

    if args.days < 1:
        print("--days: at least 1", file=sys.stderr)
        return 1
    pipelines, invalid = _load_or_report(args.specs)
    buckets: dict[tuple[str, str | None], list[dict]] = {}
    for pipeline in pipelines:
        for folder in store_folders(pipeline):
            buckets.setdefault((folder.bucket, folder.region), []).append(retention_rule(folder, args.days))
    if not buckets:
        print("no pipeline keeps artifacts: nothing to do")
    failed = False
    for (bucket, region), rules in sorted(buckets.items(), key=lambda item: (item[0][0], str(item[0][1]))):
        prefixes = ", ".join(rule["Filter"]["Prefix"] for rule in rules)
        if args.dry_run:
            print(f"s3://{bucket} ({region or 'default region'}): would expire after {args.days} days: {prefixes}")
            continue
        try:
            apply_retention(boto3.client("s3", region_name=region, endpoint_url=args.endpoint_url), bucket, rules)
        except (BotoCoreError, ClientError) as error:
            print(f"s3://{bucket}: PutBucketLifecycleConfiguration failed: {error}", file=sys.stderr)
            failed = True
            continue
        print(f"s3://{bucket} ({region or 'default region'}): expire after {args.days} days: {prefixes}")
    return 1 if failed or invalid else 0


def cmd_iam_policy(args: argparse.Namespace) -> int:
    from release_orchestrator.pipeline.iam import PolicyInputError, policy_json

    pipelines, invalid = _load_or_report([args.spec])
    if invalid:
        return 1
    [pipeline] = pipelines
    try:
        text = policy_json(pipeline, args.account_id, args.region)
    except PolicyInputError as e:
        print(f"error: {pipeline.source_file}: {e}", file=sys.stderr)
        return 2
    if not args.region and not pipeline.region:
        print(
            "note: no --region and the spec names none: actions without a region of their own get '*' as region",
            file=sys.stderr,
        )
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

    check = commands.add_parser(
        "check",
        help="look up every AWS resource the specs' actions name (preflight); exit 1 if a check fails",
        description="Check against the account, before a run, every resource each action names: CodeBuild "
        "projects; CodeDeploy applications and deployment groups, on the compute platform the action says "
        "(and BLUE_GREEN for ecs); ECR and CodeCommit repositories; S3 buckets (versioned for an S3 source); "
        "Lambda functions and aliases; SNS topics (notifications, approvals); and that each connection's "
        "credentials work and its role can be assumed. Names given as #{...} references are known only at "
        "run time: 'skipped (reference)'. Prints one table row per check (stage, action, resource, result, "
        "reason naming the AWS call that failed). Exit 0: all passed; 1: a check failed or a spec is invalid.",
    )
    check.add_argument("specs", nargs="+", metavar="SPEC", help="spec files or directories")
    check.add_argument(
        "--aws-conn-id",
        help="Airflow connection for actions (and notifications) that name none (default: the spec's "
        "aws_conn_id, else aws_default); its credentials, role_arn, region and endpoint_url are used",
    )
    check.add_argument(
        "--endpoint-url",
        help="use plain boto3 (its own credentials: environment, profile) on this endpoint, e.g. a local "
        "sandbox, instead of Airflow connections; the spec's connection ids are then not read",
    )
    check.add_argument("--region", help="region of actions for which the spec names none")
    check.add_argument("--json", action="store_true", help="print the results as JSON (a list, one per pipeline)")
    check.set_defaults(run=cmd_check)

    retention = commands.add_parser(
        "artifact-retention",
        help="expire the runs' artifacts after N days: an S3 lifecycle rule per pipeline folder of each store",
        description="Put into each artifact store's bucket (one per region) a lifecycle rule per pipeline "
        "(id 'release-orchestrator:<pipeline>', its folder as the prefix) that expires objects and their old "
        "versions N days after they were written; the bucket's other rules are kept. Uses boto3's own "
        "credentials (s3:GetLifecycleConfiguration, s3:PutLifecycleConfiguration). Exit 1: a spec is invalid "
        "or a call failed.",
    )
    retention.add_argument("specs", nargs="+", metavar="SPEC", help="spec files or directories")
    retention.add_argument("--days", type=int, required=True, help="days an artifact is kept (at least 1)")
    retention.add_argument("--endpoint-url", help="S3 endpoint, e.g. a local sandbox")
    retention.add_argument("--dry-run", action="store_true", help="print the rules, change nothing")
    retention.set_defaults(run=cmd_artifact_retention)

    iam = commands.add_parser(
        "iam-policy",
        help="print the least-privilege IAM policy (JSON) the pipeline's actions need",
        description="Print the IAM policy document the connection of a pipeline's actions needs: per action "
        "type the calls its operator makes, scoped to the ARNs of the resources the spec names; '*' only where "
        "a call cannot be scoped to a resource the spec names (the statement's Sid says why), and for the parts of "
        "a name given as a #{...} reference. Exit 1: the spec is invalid; 2: no account id.",
    )
    iam.add_argument("spec", metavar="SPEC", help="one spec file")
    iam.add_argument("--account-id", help="account of the resources (default: the one the spec's ARNs name)")
    iam.add_argument("--region", help="region of actions for which the spec names none (default: '*')")
    iam.set_defaults(run=cmd_iam_policy)

    transition = commands.add_parser(
        "transition",
        help="show, disable or enable the transition into a stage (QUEUED and SUPERSEDED pipelines)",
        description="A disabled transition holds every run at the stage's door (no worker slot) until it is "
        "enabled again; who disabled it, when and why are recorded (docs/operations.md). Exit 1: the API refused "
        "or could not be reached.",
    )
    transition.add_argument("action", choices=("show", "disable", "enable"))
    transition.add_argument("pipeline", metavar="PIPELINE")
    transition.add_argument("stage", metavar="STAGE", nargs="?", help="the stage (not for show)")
    transition.add_argument("--reason", help="why (required to disable; shown to everyone)")
    console_options(transition)
    transition.set_defaults(run=cmd_transition)

    retry = commands.add_parser(
        "retry",
        help="run a failed stage of a run again",
        description="Clear the stage's failed actions (or all of them with --all-actions), its door and every "
        "later task, so the run goes on from that stage (docs/operations.md). Exit 1: refused or unreachable.",
    )
    retry.add_argument("pipeline", metavar="PIPELINE")
    retry.add_argument("run_id", metavar="RUN_ID")
    retry.add_argument("stage", metavar="STAGE")
    retry.add_argument("--all-actions", action="store_true", help="run every action of the stage again")
    console_options(retry)
    retry.set_defaults(run=cmd_retry)

    stop = commands.add_parser(
        "stop",
        help="abandon a run: stop its builds and deployments now",
        description="Stop a run: running and waiting actions stop their AWS work (deployments roll back where "
        "configured), nothing else starts, the run ends failed with the reason as its note. Exit 1: refused or "
        "unreachable.",
    )
    stop.add_argument("pipeline", metavar="PIPELINE")
    stop.add_argument("run_id", metavar="RUN_ID")
    stop.add_argument("--reason", help="why (required; kept as the run's note)")
    stop.add_argument(
        "--wait",
        action="store_true",
        help="stop and wait: let the actions at work (builds, deployments, approvals) finish and start nothing more",
    )
    console_options(stop)
    stop.set_defaults(run=cmd_stop)

    rollback = commands.add_parser(
        "rollback",
        help="roll a stage back to an earlier successful run",
        description="Start a run that deploys STAGE again with the artifacts and variables of an earlier run in "
        "which the stage succeeded (default: the latest); the other stages are skipped (docs/operations.md). "
        "Exit 1: refused or unreachable.",
    )
    rollback.add_argument("pipeline", metavar="PIPELINE")
    rollback.add_argument("stage", metavar="STAGE")
    rollback.add_argument("--to", dest="target_run_id", metavar="RUN_ID", help="the run to go back to")
    rollback.add_argument("--reason", help="why (required; kept as the rollback run's note)")
    console_options(rollback)
    rollback.set_defaults(run=cmd_rollback)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["events-setup"]:  # its own parser reads the rest, --help included
        return events_setup(argv[1:])
    args = parser.parse_args(argv)
    return args.run(args)


def console_options(parser: argparse.ArgumentParser) -> None:
    """Where the release console's API is and who signs in (console_client.py)."""
    parser.add_argument(
        "--airflow-url", help="the Airflow api-server (default: AIRFLOW_URL, else http://localhost:8080)"
    )
    parser.add_argument("--user", help="Airflow user name (default: AIRFLOW_USER)")
    parser.add_argument("--password", help="its password (default: AIRFLOW_PASSWORD)")
    parser.add_argument("--token", help="an Airflow API token instead of a user and password (default: AIRFLOW_TOKEN)")


def through_console(args: argparse.Namespace, call) -> int:
    """Print `call(client)` made against the console's API; a refusal is the command's error (exit 1)."""
    from release_orchestrator.console_client import ConsoleClient, ConsoleError

    try:
        print(call(ConsoleClient.from_args(args)))
    except ConsoleError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_transition(args: argparse.Namespace) -> int:
    from release_orchestrator.console_client import transitions_table

    if args.action != "show" and not args.stage:
        print(f"transition {args.action}: name the STAGE", file=sys.stderr)
        return 2
    if args.action == "disable" and not (args.reason or "").strip():
        print("transition disable: give --reason (everyone waiting sees it)", file=sys.stderr)
        return 2

    def call(client) -> str:
        if args.action == "show":
            return transitions_table(client.transitions(args.pipeline))
        enabled = args.action == "enable"
        return transitions_table(client.set_transition(args.pipeline, args.stage, enabled=enabled, reason=args.reason))

    return through_console(args, call)


def cmd_retry(args: argparse.Namespace) -> int:
    mode = "ALL_ACTIONS" if args.all_actions else "FAILED_ACTIONS"

    def call(client) -> str:
        cleared = client.retry_stage(args.pipeline, args.run_id, args.stage, mode)
        return f"{args.stage} of run {args.run_id} runs again ({mode}); cleared: {', '.join(cleared)}"

    return through_console(args, call)


def cmd_stop(args: argparse.Namespace) -> int:
    if not (args.reason or "").strip():
        print("stop: give --reason (it is kept as the run's note)", file=sys.stderr)
        return 2

    def call(client) -> str:
        stopped = client.stop_run(args.pipeline, args.run_id, args.reason, "STOP_AND_WAIT" if args.wait else "ABANDON")
        if args.wait:
            return f"run {args.run_id} stopping: actions at work finish; not started: {', '.join(stopped) or 'none'}"
        return f"run {args.run_id} stopped; tasks ended: {', '.join(stopped) or 'none'}"

    return through_console(args, call)


def cmd_rollback(args: argparse.Namespace) -> int:
    if not (args.reason or "").strip():
        print("rollback: give --reason (it is kept as the rollback run's note)", file=sys.stderr)
        return 2

    def call(client) -> str:
        started = client.rollback_stage(args.pipeline, args.stage, args.reason, args.target_run_id)
        return (
            f"rollback run {started['run_id']} started: stage {args.stage} goes back to run {started['target_run_id']}"
        )

    return through_console(args, call)


def events_setup(arguments: list[str]) -> int:
    from release_orchestrator.events.setup import main as events_main  # imports boto3: only for this command

    return events_main(["setup", *arguments])


if __name__ == "__main__":
    sys.exit(main())
