"""Long fuzz run of parse + compile that reports every distinct failure, not only the first.

Run (from the clone's root): ``python -m tests.compiler.fuzz_run [--examples 20000]
[--strategy mutated|soups|valid|all] [--seed N]``.  It lives beside the test whose strategies it
runs: a benchmark imports no test code.

The strategies and the contract are those of ``tests/compiler/test_fuzz.py`` (imported from it):
any text gives plans or a ``SpecError`` whose message starts with ``fuzz.tsym:LINE:COL:``; valid
specs are checked against an independent reference.  Where the test stops at the first failure
(and shrinks it), this script counts the outcomes and keeps, per failure site (exception type,
file, line), the shortest input that reached it.  Without ``--seed`` each run draws new inputs.
Exit status 1 when any failure was seen.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings

from tests.compiler import test_fuzz as fuzz

STRATEGIES = {
    "mutated": fuzz.mutated_specs,
    "soups": fuzz.token_soups,
    "valid": fuzz.valid_specs,
}


def run(name: str, examples: int, fixed_seed: int | None):
    """Outcome counts and ``{site: (shortest input, message)}`` for one strategy."""
    outcomes: collections.Counter = collections.Counter()
    failures: dict = {}

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(STRATEGIES[name]())
    def check(case):
        try:
            if name == "valid":
                fuzz.test_valid_specs.hypothesis.inner_test(case)
                outcomes["checked"] += 1
                return
            with fuzz._small_basis_limit():
                result = fuzz.compile_or_error(case)
            outcomes["plans" if isinstance(result, list) else type(result).__name__] += 1
        except Exception as err:  # noqa: BLE001 -- every failure is what we are looking for
            frame = traceback.extract_tb(err.__traceback__)[-1]
            site = (type(err).__name__, Path(frame.filename).name, frame.lineno)
            outcomes["FAILURE"] += 1
            if site not in failures or len(repr(case)) < len(repr(failures[site][0])):
                failures[site] = (case, str(err)[:400])

    if fixed_seed is not None:
        check = seed(fixed_seed)(check)
    check()
    return outcomes, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="per strategy (default 20000)")
    parser.add_argument("--strategy", choices=[*STRATEGIES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    names = list(STRATEGIES) if args.strategy == "all" else [args.strategy]
    total = 0
    for name in names:
        start = time.perf_counter()
        outcomes, failures = run(name, args.examples, args.seed)
        elapsed = time.perf_counter() - start
        print(f"{name}: {sum(outcomes.values())} inputs in {elapsed:.1f} s: "
              + ", ".join(f"{key} {count}" for key, count in outcomes.most_common()))
        for (kind, file, line), (case, message) in failures.items():
            print(f"  FAILURE {kind} at {file}:{line}\n    input:   {case!r}\n    message: {message!r}")
        total += len(failures)
    print(f"{total} distinct failure site(s)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
