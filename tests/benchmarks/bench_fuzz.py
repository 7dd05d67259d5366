"""Fuzzing at benchmark size: generated and mutated specs through loader, validator and compiler, and CodePipeline
definitions through the importer. Counts every outcome and every crash (anything but the project's own errors).

    .venv/bin/python tests/benchmarks/bench_fuzz.py                       # 10,000 specs and 10,000 definitions
    .venv/bin/python tests/benchmarks/bench_fuzz.py --specs 500 --definitions 500 --seed 7

The inputs and the checks are tests/unit/fuzzing.py's (make test runs a few hundred of them); see
tests/benchmarks/README.md. Exit status 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import collections
import reprlib
import sys
import time
import traceback
from pathlib import Path


def run(name: str, strategy, check, examples: int, seed: int | None) -> tuple[collections.Counter, dict, float]:
    from hypothesis import given
    from hypothesis import seed as hypothesis_seed

    from tests.unit.fuzzing import fuzz_settings

    outcomes: collections.Counter = collections.Counter()
    crashes: dict[tuple, list] = {}

    # Crashes are recorded, not raised, so that every example runs (and none is shrunk).
    def one(value):
        try:
            outcomes[check(value)] += 1
        except Exception as e:  # noqa: BLE001 - counting them is the point
            frame = traceback.extract_tb(e.__traceback__)[-1]
            key = (type(e).__name__, Path(frame.filename).name, frame.lineno, str(e)[:120])
            crashes.setdefault(key, [0, _short(value)])[0] += 1
            outcomes["crash"] += 1

    test = given(strategy)(fuzz_settings(examples, derandomize=seed is None, phases=_phases())(one))
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    started = time.perf_counter()
    test()
    return outcomes, crashes, time.perf_counter() - started


def _short(value) -> str:
    """The input, cut short before it is written out: a billion laughs is small only until it is printed."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 4, 200, 200
    return short.repr(value)


def _phases():
    from hypothesis import Phase

    return [Phase.generate]


def report(name: str, outcomes: collections.Counter, crashes: dict, seconds: float) -> None:
    total = sum(outcomes.values())
    counts = ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))
    print(f"{name}: {total:,} examples ({counts}); crashes: {outcomes['crash']}")
    print(f"  time {seconds:.1f} s, {1000 * seconds / max(total, 1):.1f} ms per example")
    for (kind, file, line, message), (count, example) in sorted(crashes.items(), key=lambda c: -c[1][0]):
        print(f"  CRASH x{count}: {kind} at {file}:{line}: {message}\n    first input: {example}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=int, default=10_000, help="spec examples (default 10,000)")
    parser.add_argument("--definitions", type=int, default=10_000, help="importer examples (default 10,000)")
    parser.add_argument("--seed", type=int, help="other examples than the default (derandomized) ones")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(root / "plugins"), str(root)]

    from tests.unit.fuzzing import check_import, check_spec, definitions, spec_texts

    crashed = 0
    for name, strategy, check, examples in (
        ("specs (load, validate, compile, serialize)", spec_texts(), check_spec, args.specs),
        ("CodePipeline definitions (import, reload)", definitions(), check_import, args.definitions),
    ):
        if examples:
            outcomes, crashes, seconds = run(name, strategy, check, examples, args.seed)
            report(name, outcomes, crashes, seconds)
            crashed += outcomes["crash"]
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
