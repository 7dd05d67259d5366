"""How long the DAG processor takes to parse the pipeline factory, next to an equivalent hand-written DAG file.

    .venv/bin/python tests/benchmarks/bench_parse.py                 # N = 1, 10, 100; 5 repeats; profile N=100
    .venv/bin/python tests/benchmarks/bench_parse.py --sizes 100 --repeats 9 --no-profile

A benchmark script, not a test (pytest does not collect it). For each N it writes, in a temporary directory,
N copies of include/pipelines/webapp-release.yaml (5 stages, 8 actions; pipeline, repository, project and
application names varied per copy) and one hand-written Python file defining the same N DAGs: the same
operators from release_orchestrator.operators with the same arguments, the same TaskGroups, dependencies,
params, callbacks and docs, written out literally. Before timing, both are parsed once and their serialized
DAGs compared, so the two sides are known to describe the same DAGs.

Each measurement runs in a fresh interpreter that first loads what the dag-processor's manager process has
loaded when it forks a parser (airflow.dag_processing.manager and what it imports, plus the airflow.* modules
the DAG file imports, which the manager pre-imports: ``[dag_processor] parsing_pre_import_modules``). It then
replays what the forked child does in airflow/dag_processing/processor.py ``_parse_file``:

- ``stability``: the AST check for DAG version inflation (``check_dag_file_stability``);
- ``parse``: ``DagBag(dag_folder=<file>, bundle_path=..., load_op_links=False)``: import the file, collect,
  validate and bag its DAGs. Modules the file imports outside ``airflow.*`` (release_orchestrator, the
  Amazon provider hooks the operators use, boto3, ...) are not preloaded by the manager, so every real parse
  pays for importing them: this first parse is the representative figure;
- ``serialize``: ``DagSerialization.to_dict`` of every DAG, which the processor sends to the scheduler.

The same process then parses the file a second time (``warm``): every module is already imported, so this
is the cost of the DAG-building code alone. Each measurement is repeated (``--repeats``) and the median
reported, in CPU seconds of the parsing process by default (``--clock wall`` for wall-clock time), so other
load on the machine does not inflate it. Unless ``--no-profile``, the first parse of each file at
``--profile-size`` pipelines then runs under cProfile, and a summary of where its time goes is printed.

Files measured, each with RELEASE_ORCHESTRATOR_PIPELINES_DIR pointing at the generated specs:
``dags/release_pipelines.py`` (the factory), ``dags/release_pipeline_errors.py`` (loads the specs again to
report invalid ones; the dag-processor parses it in its own fork), and the generated hand-written file.

``--root DIR`` measures the dags/ and plugins/ of another checkout (e.g. a copy with an optimisation).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pprint
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = REPO / "include" / "pipelines" / "webapp-release.yaml"
FACTORY = "release_pipelines.py"
ERRORS = "release_pipeline_errors.py"
HAND = "hand_written_pipelines.py"
BUNDLE = "dags-folder"


# --- generating specs and the hand-written DAG file ---------------------------------------------------------


def write_specs(directory: Path, count: int) -> Path:
    """`count` copies of the example spec in directory/pipelines, names varied; returns that folder."""
    specs = directory / "pipelines"
    specs.mkdir(parents=True)
    # The ECS action's task definition is a path relative to the spec's directory.
    shutil.copytree(REPO / "include" / "sample_app", directory / "sample_app")
    text = EXAMPLE_SPEC.read_text()
    for index in range(count):
        # webapp-release -> webapp007-release, acme/webapp -> acme/webapp007, webapp-build -> webapp007-build...
        (specs / f"webapp{index:03d}-release.yaml").write_text(re.sub(r"\bwebapp\b", f"webapp{index:03d}", text))
    return specs


def _literal(value, indent: int) -> str:
    text = pprint.pformat(value, width=110 - indent, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def _ident(text: str) -> str:
    return re.sub(r"\W", "_", text).lower()


def write_hand_written(path: Path, specs: Path) -> None:
    """One Python file defining, by hand, the DAGs the factory compiles from `specs`.

    Task arguments are taken from the compiler (so they are exactly what it passes, defaults and Jinja
    included) and written out as literals; the DAG, TaskGroups and dependencies are written as one would by
    hand. compare_worker() checks that both give the same serialized DAGs.
    """
    from release_orchestrator import settings
    from release_orchestrator.pipeline import compiler
    from release_orchestrator.pipeline.action_types import ActionType
    from release_orchestrator.pipeline.loader import load_specs

    pipelines, errors = load_specs(str(specs))
    assert not errors, errors

    class Recorded:
        def __init__(self, cls, **kwargs):
            self.cls, self.kwargs = cls, kwargs

    real_operator_class = ActionType.operator_class

    def recording_operator_class(self, configuration=None):
        cls = real_operator_class(self, configuration)
        return lambda **kwargs: Recorded(cls, **kwargs)

    out = [
        '"""Release pipelines written by hand as Airflow DAGs (the benchmark\'s comparison for the factory)."""',
        "",
        "import datetime",
        "",
        "from airflow.sdk import DAG, Param, TaskGroup",
        "",
    ]
    imports: set[tuple[str, str]] = set()
    body: list[str] = []
    ActionType.operator_class = recording_operator_class
    try:
        for number, pipeline in enumerate(pipelines):
            suffix = f"_{number:03d}"
            notifiers = compiler._notifiers(pipeline)
            names = {id(n): f"notify_{_ident(event)}{suffix}" for event, n in notifiers.items()}
            body += ["", "", f"# ---- {pipeline.name} " + "-" * max(0, 100 - len(pipeline.name))]
            for event, notifier in notifiers.items():
                imports.add(("release_orchestrator.notifications.notifier", "PipelineEventNotifier"))
                body.append(
                    f"{names[id(notifier)]} = PipelineEventNotifier(event={event!r}, pipeline={pipeline.name!r}, "
                    f"target_arn={notifier.target_arn!r}, aws_conn_id={notifier.aws_conn_id!r}, "
                    f"region_name={notifier.region_name!r})"
                )

            def ref(value, indent: int) -> str:
                if isinstance(value, list) and value and all(id(v) in names for v in value):  # notifiers
                    return "[" + ", ".join(names[id(v)] for v in value) + "]"
                if isinstance(value, timedelta):
                    return f"datetime.timedelta(seconds={value.total_seconds()!r})"
                return _literal(value, indent)

            def callback(event: str) -> str:
                return f"[{names[id(notifiers[event])]}]" if event in notifiers else "None"

            params = [
                f"        {v.name!r}: Param({v.default!r}, "
                f"type={['string', 'null'] if v.default is None else 'string'!r}, "
                f"description={v.description or f'pipeline variable {v.name}'!r}),"
                for v in pipeline.variables
            ]
            params.append(
                f"        {compiler.SOURCE_REVISION_PARAM!r}: Param(None, type=['null', 'string'], "
                "description='Release this revision instead of the one the trigger carries: a commit id, "
                "an image digest or an S3 object version.'),"
            )
            mode = pipeline.execution_mode
            imports.add(("release_orchestrator.pipeline.compiler", "release_output"))
            body += [
                "with DAG(",
                f"    dag_id={compiler.airflow_key(pipeline.name)!r},",
                f"    description={(pipeline.description or '')[:200] or None!r},",
                f"    schedule={pipeline.schedule!r},",
                "    catchup=False,",
                "    params={",
                *params,
                "    },",
                f"    tags={[compiler.TAG, *pipeline.tags]!r},",
                f"    max_active_runs={settings.PARALLEL_RUNS.get() if mode == 'PARALLEL' else 1},",
                f"    doc_md={compiler.doc_md(pipeline)!r},",
                "    user_defined_macros={'release_output': release_output},",
                f"    on_success_callback={callback('pipeline-succeeded')},",
                f"    on_failure_callback={callback('pipeline-failed')},",
                "    default_args={'retries': 0},",
                f") as dag{suffix}:",
            ]
            namespaces = {
                a.namespace: compiler.task_id_of(s.name, a.name)
                for s in pipeline.stages
                for a in s.actions
                if a.namespace
            }
            failure_callbacks = [notifiers[e] for e in ("action-failed", "stage-failed") if e in notifiers]
            groups, first = [], True
            for stage in pipeline.stages:
                group = f"{_ident(compiler.airflow_key(stage.name))}{suffix}"
                groups.append(group)
                body.append(
                    f"    with TaskGroup(group_id={compiler.airflow_key(stage.name)!r}, "
                    f"tooltip={f'stage {stage.name}'!r}) as {group}:"
                )
                previous: list[str] = []
                ordered = sorted(stage.actions, key=lambda a: a.run_order)
                for run_order in sorted({a.run_order for a in ordered}):
                    tasks = []
                    for action in (a for a in ordered if a.run_order == run_order):
                        rec = compiler._build_task(
                            pipeline, stage, action, namespaces, notifiers, failure_callbacks, started=first
                        )
                        first = False
                        imports.add((rec.cls.__module__, rec.cls.__name__))
                        var = f"{_ident(stage.name)}_{_ident(action.name)}{suffix}"
                        tasks.append(var)
                        kwargs = dict(rec.kwargs)
                        body.append(f"        {var} = {rec.cls.__name__}(")
                        body.append(f"            task_id={kwargs.pop('task_id')!r},")
                        body += [f"            {key}={ref(value, 12)}," for key, value in kwargs.items()]
                        body.append("        )")
                    for upstream in previous:
                        body.append(f"        {upstream} >> [{', '.join(tasks)}]")
                    previous = tasks
            body.append("    " + " >> ".join(groups))
    finally:
        ActionType.operator_class = real_operator_class
    out += [f"from {module} import {name}" for module, name in sorted(imports)]
    path.write_text("\n".join(out + body) + "\n")


# --- the measurement, in a fresh interpreter ----------------------------------------------------------------


def _bench_env(root: Path, specs: Path, airflow_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(root / "plugins"), str(root)]),
            "RELEASE_ORCHESTRATOR_PIPELINES_DIR": str(specs),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    return env


def worker(file: str, bundle: str, passes: int, profile: str | None) -> None:
    """Runs in the fresh interpreter; prints one JSON line with the timings of each pass."""
    import logging

    logging.disable(logging.WARNING)  # DagBag's "Filling up the DagBag" lines
    import airflow.dag_processing.manager  # noqa: F401  - what the dag-processor's manager has loaded
    import structlog
    from airflow.dag_processing.dagbag import DagBag
    from airflow.dag_processing.processor import _pre_import_airflow_modules, _serialize_dags
    from airflow.utils.dag_version_inflation_checker import check_dag_file_stability

    log = structlog.get_logger()
    gc.freeze()  # the manager freezes its heap before its parsing loop, so forked parsers never scan it
    _pre_import_airflow_modules(file, log)  # done by the manager before it forks the parser

    results = []
    bag = serialized = None
    for number in range(passes):
        if number:  # the warm pass: drop the previous pass's DAGs, and keep every import out of GC's way
            bag = serialized = None
            gc.collect()
            gc.freeze()
        profiler = None
        if profile and number == 0:  # the parse only: the figure the profile explains
            import cProfile

            profiler = cProfile.Profile()
        marks = [(time.perf_counter(), time.process_time())]
        check_dag_file_stability(file)
        marks.append((time.perf_counter(), time.process_time()))
        if profiler is not None:
            profiler.enable()
        bag = DagBag(dag_folder=file, bundle_path=Path(bundle), bundle_name=BUNDLE, load_op_links=False)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        marks.append((time.perf_counter(), time.process_time()))
        serialized, serialization_errors = _serialize_dags(bag, log)
        marks.append((time.perf_counter(), time.process_time()))
        step = {}
        for index, name in enumerate(("stability", "parse", "serialize")):
            step[name] = marks[index + 1][1] - marks[index][1]  # CPU seconds
            step[name + "_wall"] = marks[index + 1][0] - marks[index][0]
        results.append(
            {
                **step,
                "dags": len(bag.dags),
                "tasks": sum(len(d.tasks) for d in bag.dags.values()),
                "import_errors": {**bag.import_errors, **serialization_errors},
            }
        )
    print(json.dumps(results))


def compare_worker(factory: str, hand: str, bundle: str) -> None:
    """Runs in a fresh interpreter: both files must yield the same DAGs, serialized."""
    import logging

    logging.disable(logging.WARNING)
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    def dags(file):
        bag = DagBag(dag_folder=file, bundle_path=Path(bundle), bundle_name=BUNDLE, load_op_links=False)
        assert not bag.import_errors, bag.import_errors
        return {dag_id: DagSerialization.to_dict(dag)["dag"] for dag_id, dag in bag.dags.items()}

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("fileloc", "relative_fileloc", "_task_module")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    a, b = dags(factory), dags(hand)
    problems = []
    if sorted(a) != sorted(b):
        problems.append(f"dag ids differ: {sorted(set(a) ^ set(b))}")
    for dag_id in sorted(set(a) & set(b)):
        if strip(a[dag_id]) != strip(b[dag_id]):
            x, y = strip(a[dag_id]), strip(b[dag_id])
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            problems.append(f"{dag_id}: serialized DAGs differ in {keys}")
    print(json.dumps({"dags": len(a), "problems": problems[:5]}))


def run_worker(args: list[str], env: dict[str, str]) -> object:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"worker {args} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- profile ------------------------------------------------------------------------------------------------

# (label, file suffix, function) whose cumulative time says where a parse goes (the largest among matches).
PROFILE_GROUPS = [
    ("import the DAG file (run its module body)", "importers/python_importer.py", "_load_modules_from_file"),
    ("  imports: release_orchestrator, Amazon provider, boto3...", None, "imports"),
    ("  load_specs: read, YAML, shape checks, validate", "pipeline/loader.py", "load_specs"),
    ("    YAML to Python objects (loader.get_single_data)", "yaml/constructor.py", "get_single_data"),
    ("    validate()", "pipeline/validate.py", "validate"),
    ("  build_dag (all pipelines)", "pipeline/compiler.py", "build_dag"),
    ("    _build_task: operators", "pipeline/compiler.py", "_build_task"),
    ("    _notifiers", "pipeline/compiler.py", "_notifiers"),
    ("dag.validate() of each DAG", "definitions/dag.py", "validate"),
    ("bag_dag: cycle check, template files, policies", "dag_processing/dagbag.py", "bag_dag"),
]


def profile_summary(path: str, dag_file: str, top: int) -> tuple[float, list, list]:
    """Total seconds, (label, cumulative seconds) per PROFILE_GROUPS entry, and the top functions by own time."""
    import pstats

    stats = pstats.Stats(path)
    raw = stats.stats  # (file, line, func) -> (cc, nc, tottime, cumtime, callers)
    total = stats.total_tt
    groups = []
    for label, suffix, func in PROFILE_GROUPS:
        if suffix is None:  # imports started by the DAG file or by a function, not nested in another import
            times = [
                sum(
                    c[3]
                    for (cf, _, cfn), c in v[4].items()
                    if not cf.startswith("<frozen") and (cfn != "<module>" or cf == dag_file)
                )
                for (f, _, fn), v in raw.items()
                if f == "<frozen importlib._bootstrap>" and fn == "_find_and_load"
            ]
            groups.append((label, sum(times)))
            continue
        # The outermost call carries the whole time: take the largest cumulative time among matches.
        times = [v[3] for (f, _, fn), v in raw.items() if f.endswith(suffix) and fn == func]
        if times:
            groups.append((label, max(times)))
    by_own = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    own = [(f"{_short(f)}:{line}({fn})", v[2], v[3]) for (f, line, fn), v in by_own]
    return total, groups, own


def _short(filename: str) -> str:
    for marker in ("site-packages/", "plugins/", "python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# --- driver -------------------------------------------------------------------------------------------------


def median(values):
    return statistics.median(values) if values else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100", help="numbers of pipelines (default 1,10,100)")
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters per measurement (default 5)")
    parser.add_argument("--profile-size", type=int, default=100, help="N to profile (default 100)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--top", type=int, default=20, help="profile lines by own time (default 20)")
    parser.add_argument("--root", type=Path, default=REPO, help="checkout whose dags/ and plugins/ are measured")
    parser.add_argument("--json", type=Path, help="also write every raw timing here")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="report CPU time of the parsing process (default; not inflated by other load on the "
        "machine) or wall-clock time (both are in --json)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = args.root.resolve()

    sys.path[:0] = [str(root / "plugins"), str(root)]
    work = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow-home"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    print(f"root {root}; files in {work}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs", flush=True)
    raw: dict = {"sizes": sizes, "repeats": args.repeats, "root": str(root), "results": {}}
    try:
        setups = {}
        for n in sizes + ([args.profile_size] if not args.no_profile else []):
            if n in setups:
                continue
            base = work / f"n{n}"
            specs = write_specs(base, n)
            hand_dir = base / "dags"
            hand_dir.mkdir()
            write_hand_written(hand_dir / HAND, specs)
            env = _bench_env(root, specs, work / "airflow-home")
            setups[n] = (
                specs,
                env,
                {
                    "factory": (str(root / "dags" / FACTORY), str(root / "dags")),
                    "errors": (str(root / "dags" / ERRORS), str(root / "dags")),
                    "hand": (str(hand_dir / HAND), str(hand_dir)),
                },
            )

        # The two sides must describe the same DAGs.
        n_check = min(sizes)
        _, env, files = setups[n_check]
        check = run_worker(["_compare", files["factory"][0], files["hand"][0], files["hand"][1]], env)
        if check["problems"]:
            raise SystemExit(f"hand-written DAGs differ from the factory's: {check['problems']}")
        print(
            f"check: the hand-written file and the factory give the same {check['dags']} serialized DAG(s) "
            f"(N={n_check})",
            flush=True,
        )

        for n in sizes:
            _, env, files = setups[n]
            per_file: dict[str, list] = {k: [] for k in files}
            for repeat in range(args.repeats):
                for kind, (file, bundle) in files.items():  # interleaved, so drifting load hits every kind alike
                    passes = run_worker(["_worker", file, bundle, "2"], env)
                    first = passes[0]
                    if first["import_errors"]:
                        raise SystemExit(f"{kind} N={n}: import errors {first['import_errors']}")
                    expected = 0 if kind == "errors" else n
                    if first["dags"] != expected:
                        raise SystemExit(f"{kind} N={n}: {first['dags']} DAGs, expected {expected}")
                    per_file[kind].append(passes)
                print(f"  N={n}: repeat {repeat + 1}/{args.repeats} done", flush=True)
            raw["results"][n] = per_file
        report(raw, sizes, args.clock)

        if not args.no_profile:
            n = args.profile_size
            _, env, files = setups[n]
            for kind in ("factory", "errors", "hand"):
                prof = str(work / f"{kind}-n{n}.prof")
                run_worker(["_worker", files[kind][0], files[kind][1], "1", prof], env)
                total, groups, own = profile_summary(prof, files[kind][0], args.top)
                print(
                    f"\nProfile of the first DagBag parse of {kind} ({Path(files[kind][0]).name}), N={n}: "
                    f"{total:.2f} s under cProfile, which inflates call-heavy code; read the shares."
                )
                for label, seconds in groups:
                    print(f"  {label:<60} {seconds:6.3f} s  {100 * seconds / total:5.1f} %")
                print(f"  top {args.top} by own time (own s, cumulative s):")
                for where, tottime, cumtime in own:
                    print(f"    {tottime:6.3f} {cumtime:6.3f}  {where}")
                if args.keep:
                    print(f"  (full profile: {prof}; e.g. python -m pstats {prof})")
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def report(raw: dict, sizes: list[int], clock: str) -> None:
    suffix = "" if clock == "cpu" else "_wall"

    def runs(n, kind, pass_=0):
        return [p[pass_] for p in raw["results"][n][kind]]

    def med(n, kind, key="parse", pass_=0):
        return median([r[key + suffix] for r in runs(n, kind, pass_)])

    def both(n, key="parse", pass_=0):  # the two factory files, paired per repeat
        return median(
            [a[key + suffix] + b[key + suffix] for a, b in zip(runs(n, "factory", pass_), runs(n, "errors", pass_))]
        )

    def full(n, kind):  # what the forked parser spends on the file
        return median([r["stability" + suffix] + r["parse" + suffix] + r["serialize" + suffix] for r in runs(n, kind)])

    what = "CPU seconds of the parsing process" if clock == "cpu" else "wall-clock seconds"
    print(
        f"\nMedian of {raw['repeats']} fresh interpreters, {what}. Parse = DagBag of the one file, the first "
        "parse in a process set up like a dag-processor fork."
    )
    print(
        "| N | factory | errors file | factory + errors file | hand-written | factory ÷ hand | "
        "(factory + errors) ÷ hand |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        f, e, b, h = med(n, "factory"), med(n, "errors"), both(n), med(n, "hand")
        print(f"| {n} | {f:.3f} | {e:.3f} | {b:.3f} | {h:.3f} | {f / h:.2f}x | {b / h:.2f}x |")
    print(
        "\nWarm = second parse in the same process (every module already imported). Full = what the forked "
        "parser does with the file: stability check + parse + serialization (factory: both files)."
    )
    print("| N | factory warm | factory + errors warm | hand-written warm | factory full | hand-written full |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        print(
            f"| {n} | {med(n, 'factory', pass_=1):.3f} | {both(n, pass_=1):.3f} | {med(n, 'hand', pass_=1):.3f} | "
            f"{full(n, 'factory') + full(n, 'errors'):.3f} | {full(n, 'hand'):.3f} |"
        )
    print()
    for n in sizes:
        spread = {
            k: (min(r["parse" + suffix] for r in runs(n, k)), max(r["parse" + suffix] for r in runs(n, k)))
            for k in raw["results"][n]
        }
        print(f"N={n} parse min-max: " + ", ".join(f"{k} {lo:.3f}-{hi:.3f}" for k, (lo, hi) in spread.items()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
    elif len(sys.argv) > 1 and sys.argv[1] == "_compare":
        compare_worker(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still remove the temporary files
        sys.exit(main())
