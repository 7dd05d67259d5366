"""No spec crashes the loader, the validator or the compiler: generated specs, and the real ones mutated.

A few hundred examples, the same ones every run (derandomized, no example database); the benchmark
tests/benchmarks/bench_fuzz.py runs tens of thousands.
"""

from hypothesis import given

from tests.unit.fuzzing import check_spec, fuzz_settings, spec_texts


@given(spec_texts())
@fuzz_settings(200)
def test_any_spec_gives_a_dag_or_spec_errors_naming_the_file(text):
    check_spec(text)
