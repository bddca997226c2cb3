"""The bookkeeping of ``benchmarks/multiprocess.py`` (no training: the helpers alone, < 1 s).

Expected values are worked out by hand from the definitions in the benchmark's docstring.
"""
from __future__ import annotations

import pytest

from benchmarks import multiprocess


@pytest.fixture(scope="module")
def bench():
    return multiprocess


def test_global_batch_sizes_follow_epochs(bench):
    # 10 structures, batches of 4: epochs of 4, 4, 2
    assert bench.global_batch_sizes(10, 4, 7) == [4, 4, 2, 4, 4, 2, 4]
    # 276 demo training structures, batches of 32: 8 full batches and one of 20 per epoch
    sizes = bench.global_batch_sizes(276, 32, 18)
    assert sizes[:9] == [32] * 8 + [20] and sizes[9:] == sizes[:9]


def test_samples_per_second_leaves_out_warm_up(bench):
    # steps end at 1, 2, 4 s with 4, 4, 2 structures; warm = 1: steps 2-3, 6 structures in 3 s
    assert bench.samples_per_second([1.0, 2.0, 4.0], [4, 4, 2], 1) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"^warm must be in 1\.\.2"):
        bench.samples_per_second([1.0, 2.0, 4.0], [4, 4, 2], 3)


def test_max_rel_diff_and_agreement(bench):
    assert bench.max_rel_diff([1.0, 2.2, -3.0], [1.0, 2.0, -3.3]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"^2 step losses against 3"):
        bench.max_rel_diff([1.0, 2.0], [1.0, 2.0, 3.0])
    row = {"first_diff": 1e-7, "diff": 1e-4}
    assert bench.agrees(row, 1e-3)
    assert not bench.agrees({**row, "diff": 2e-3}, 1e-3)
    assert not bench.agrees({**row, "first_diff": 1e-4}, 1e-3)  # step 1 is held to FIRST_RTOL


def test_bench_config_is_the_demo_with_the_benchmark_loop(bench):
    from tsym.cli.demo import demo_config
    from tsym.runtime.training.config import load_config

    cfg = bench.bench_config(40, 32, "float64", "cpu")
    demo = demo_config()
    assert cfg["model"]["backbone_kwargs"] == demo["model"]["backbone_kwargs"]
    assert cfg["heads"] == demo["heads"]
    t = load_config(cfg).training  # a valid config
    assert (t.max_steps, t.batch_size, t.device, t.checkpoint_every) == (40, 32, "cpu", 0)
    assert load_config(cfg).model.dtype == "float64"
