"""Run the crash-fault suite and print what happened: component x moment -> outcome.

    .venv/bin/python tests/benchmarks/fault_table.py            # runs tests/integration/test_faults.py (~6 min)
    .venv/bin/python tests/benchmarks/fault_table.py --json FILE   # also keep the raw observations
    .venv/bin/python tests/benchmarks/fault_table.py --from FILE   # print the table of an earlier run

The suite writes what it saw per component and moment to RELEASE_ORCHESTRATOR_FAULT_TABLE (a JSON file); this
script points that at a temporary file, runs pytest on the suite, and prints the table in Markdown. A cell reads
`success` / `failed` (the run's end), then `ok` when every check held (the intended end state, one build or
deployment per action, each expected SNS message once), otherwise the checks that did not. It exits with
pytest's exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "tests/integration/test_faults.py"
COMPONENTS = ("celery-worker", "triggerer", "scheduler", "api-server")
MOMENTS = {
    "build": "build wait",
    "deployment": "deployment in progress",
    "ready": "deployment at Ready",
    "approval": "approval (decided in the outage)",
    "failure": "failure being published",
}


def cell(seen: dict | None) -> str:
    if not seen:
        return "not run"
    state = seen.get("state", "not ended")
    problems = seen.get("problems") or []
    if not problems:
        return f"{state}, ok"
    return f"{state}; " + "; ".join(p.replace("|", "/").replace("\n", " ")[:160] for p in problems)


def table(data: dict) -> str:
    rows = data.get("rows", {})
    lines = ["| component killed | " + " | ".join(MOMENTS.values()) + " |", "|---" * (len(MOMENTS) + 1) + "|"]
    for component in COMPONENTS:
        seen = rows.get(component, {})
        lines.append(f"| {component} | " + " | ".join(cell(seen.get(m)) for m in MOMENTS) + " |")
    if "dag-processor" in rows:
        lines.append(
            "| dag-processor | "
            + " | ".join(cell(rows["dag-processor"].get(m)) if m == "failure" else "—" for m in MOMENTS)
            + " |"
        )
    if "throttled" in rows:
        lines += [
            "",
            "| fault | outcome |",
            "|---|---|",
            "| 50 % of CodeBuild and CodeDeploy calls throttled | " + cell(rows["throttled"].get("throttle")) + " |",
        ]
    notes = []
    for component in COMPONENTS:
        seen = rows.get(component, {})
        if "error" in seen:
            notes.append(f"- {component}: the test stopped early: " + "; ".join(seen["error"]["problems"])[:400])
        at_kill = {m: seen[m].get("at_kill") for m in MOMENTS if m in seen and seen[m].get("at_kill")}
        in_outage = {m: seen[m].get("in_outage") for m in MOMENTS if m in seen and seen[m].get("in_outage")}
        timing = data.get("timings", {}).get(component, {})
        if at_kill:
            notes.append(
                f"- {component}: at the kill: "
                + ", ".join(f"{m} {s}" for m, s in at_kill.items())
                + ("; during the outage: " + ", ".join(f"{m} {s}" for m, s in in_outage.items()) if in_outage else "")
                + (f"; down {timing['down_s']} s" if "down_s" in timing else "")
                + (f"; every run ended {timing['to_end_s']} s after the restart" if "to_end_s" in timing else "")
            )
    if notes:
        lines += ["", *notes]
    if "seconds" in data:
        lines += ["", f"Suite time (module): {data['seconds']:.0f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="print the table of an earlier run's JSON file")
    parser.add_argument("--json", help="keep the raw observations in this file")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    if args.source:
        print(table(json.loads(Path(args.source).read_text())))
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.json or Path(scratch) / "faults.json").resolve()
        env = {**os.environ, "RELEASE_ORCHESTRATOR_FAULT_TABLE": str(out)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "plugins"), str(REPO), env.get("PYTHONPATH")]))
        code = subprocess.call([sys.executable, "-m", "pytest", SUITE, "-q", *args.pytest_args], cwd=REPO, env=env)
        if not out.exists():
            print(f"the suite wrote no observations (pytest exit code {code})", file=sys.stderr)
            return code or 1
        print()
        print(table(json.loads(out.read_text())))
    return code


if __name__ == "__main__":
    sys.exit(main())
