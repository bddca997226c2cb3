"""Refinement (``refine:``): full-batch L-BFGS after the AdamW steps.

Checked against independent facts, not against numbers the code printed: the chunked closure's
loss and gradient equal those of one batch holding the whole split (float64, a sum of ~40 terms:
1e-12 relative); a strong-Wolfe line search never raises the loss it minimises, so the training
loss of successive iterations does not rise; ``best.pt`` only takes weights with a lower
validation loss; a finished run can be refined by resuming it.
"""
from __future__ import annotations

import json

import pytest
import torch

from tsym.runtime.model.checkpoint import read_training
from tsym.runtime.training.config import ConfigError, TrainConfig
from tsym.runtime.training.loop import train
from tsym.runtime.training.refine import _chunks, _closure, _totals

from .test_train import make_config, write_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    write_dataset(root / "data.extxyz", n=16)
    return root


def _records(run, kind):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_refine_section_is_checked():
    base = {"heads": {"a": {"spec": "tensor a { indices ij }"}}, "data": {"train": "d.extxyz"}}
    assert TrainConfig.from_dict(base).refine.iterations == 0  # off by default
    cfg = TrainConfig.from_dict({**base, "refine": {"iterations": 3, "chunk": 2}})
    assert (cfg.refine.iterations, cfg.refine.chunk, cfg.to_dict()["refine"]["evaluations"]) \
        == (3, 2, 20)
    with pytest.raises(ConfigError, match=r"section 'refine': 'chunk' must be > 0, got 0"):
        TrainConfig.from_dict({**base, "refine": {"chunk": 0}})
    with pytest.raises(ConfigError, match=r"section 'refine': unknown key 'iters'"):
        TrainConfig.from_dict({**base, "refine": {"iters": 3}})


def test_refinement_lowers_the_losses_and_keeps_the_best(data):
    cfg = make_config(data / "data.extxyz", max_steps=6, log_every=0)
    cfg["refine"] = {"iterations": 4, "evaluations": 5, "chunk": 3}
    summary = train(cfg, data / "run")
    run = data / "run"
    epochs, refined = _records(run, "epoch"), _records(run, "refine")
    assert summary["refined"] == 4 and [r["iteration"] for r in refined] == [1, 2, 3, 4]
    losses = [r["train_loss"] for r in refined]  # each: the loss where the iteration began
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:]))
    assert losses[-1] < losses[0]
    best_adam = min(r["valid_loss"] for r in epochs)
    best_refined = min(r["valid_loss"] for r in refined)
    assert summary["best_valid_loss"] == pytest.approx(min(best_adam, best_refined), rel=1e-12)
    assert best_refined < best_adam  # 6 AdamW steps leave much to gain on 12 molecules
    ckpt = read_training(run / "last.pt")
    assert ckpt["refined"] == 4 and ckpt["ema"] is not None
    again = train(cfg, run, resume=True)  # nothing left to do
    assert again["refined"] == 4 and len(_records(run, "refine")) == 4


def test_a_finished_run_can_be_refined_by_resuming(data):
    cfg = make_config(data / "data.extxyz", max_steps=4, log_every=0)
    first = train(cfg, data / "plain")
    assert first["refined"] == 0 and not _records(data / "plain", "refine")
    cfg["refine"] = {"iterations": 2, "evaluations": 3}
    second = train(cfg, data / "plain", resume=True)
    assert second["refined"] == 2 and second["steps"] == 4
    assert second["best_valid_loss"] <= first["best_valid_loss"]
    assert [r["iteration"] for r in _records(data / "plain", "refine")] == [1, 2]


@pytest.mark.parametrize("dtype, rel", [("float64", 1e-12), ("float32", 1e-5)])
def test_chunked_closure_equals_one_batch(data, dtype, rel):
    """Loss and gradient summed over chunks of 3 structures equal those of one batch of 12.

    Tolerance: the chunked and whole sums add the same ~12 x 6 terms in another order; the
    rounding is a few ulp of the total (float64 1e-12; float32 1e-5, 100 ulp)."""
    from tsym.runtime.training.guard import StopSignals
    from tsym.runtime.training.loop import Trainer
    from tsym.runtime.training.config import load_config
    from tsym.runtime.training.distributed import setup_dist

    results = []
    for chunk, name in ((3, "c3"), (1000, "c1000")):
        cfg = make_config(data / "data.extxyz", dtype=dtype, max_steps=2, log_every=0)
        cfg["refine"] = {"iterations": 1, "chunk": chunk}
        with StopSignals(announce=False) as signals:
            tr = Trainer(load_config(cfg), setup_dist("cpu"), data / name, False, None, signals)
        chunks = _chunks(tr)
        assert len(chunks) == (4 if chunk == 3 else 1)
        params = [p for p in tr.net.parameters() if p.requires_grad]
        loss = _closure(tr, chunks, _totals(tr, chunks), params)()
        grad = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
        results.append((float(loss), grad.double()))
    (l3, g3), (l1, g1) = results
    assert l3 == pytest.approx(l1, rel=rel)
    assert float((g3 - g1).abs().max()) <= rel * float(g1.abs().max())


def test_a_signal_during_refinement_is_resumable(data, monkeypatch):
    """SIGTERM after refine iteration 2 of 4 writes a resumable last.pt (EMA state included);
    resuming runs iterations 3 and 4 only."""
    from tsym.runtime.errors import TrainInterrupted
    from tsym.runtime.training.guard import StopSignals

    cfg = make_config(data / "data.extxyz", max_steps=4, log_every=0)
    cfg["refine"] = {"iterations": 4, "evaluations": 3}
    real = StopSignals.received
    calls = {"refine": 0}

    def received(self, world=1, device=None):
        if _records(data / "sig", "refine"):  # refining: stop after its second iteration
            calls["refine"] += 1
            return 15 if calls["refine"] == 2 else None
        return real(self, world, device)

    monkeypatch.setattr(StopSignals, "received", received)
    with pytest.raises(TrainInterrupted, match=r"stopped by SIGTERM after step 4"):
        train(cfg, data / "sig")
    ckpt = read_training(data / "sig" / "last.pt")
    assert ckpt["refined"] == 2 and ckpt["ema"] is not None
    monkeypatch.setattr(StopSignals, "received", real)
    summary = train(cfg, data / "sig", resume=True)
    assert summary["refined"] == 4
    assert [r["iteration"] for r in _records(data / "sig", "refine")] == [1, 2, 3, 4]


def test_a_stalled_lbfgs_restarts_then_stops(data, monkeypatch):
    """``patience: 2``: two iterations that do not lower the training loss drop the L-BFGS
    history (a new optimiser); two more from that fresh start end refinement early, and resuming
    has nothing left to do.  The optimiser is a stand-in that reports a scripted loss (each step
    still evaluates the real closure), so the stall is exact, not a float32 accident."""
    from tsym.runtime.training import refine as refine_mod

    scripted = iter([1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    made = []

    class Stalled:
        def __init__(self, params, r):
            made.append(r.evaluations)

        def step(self, closure):
            closure()
            return torch.tensor(next(scripted))

    monkeypatch.setattr(refine_mod, "_lbfgs", Stalled)
    cfg = make_config(data / "data.extxyz", max_steps=2, log_every=0)
    cfg["refine"] = {"iterations": 20, "evaluations": 3, "patience": 2}
    summary = train(cfg, data / "stall")
    run = data / "stall"
    assert len(made) == 2  # the first start and one restart
    # 1.0 -> 0.5 is a decrease; 3 and 4 stall (restart after 4); 5 and 6 stall again: stop
    assert [r["iteration"] for r in _records(run, "refine")] == [1, 2, 3, 4, 5, 6]
    assert [r["iteration"] for r in _records(run, "refine_restart")] == [4]
    (stopped,) = _records(run, "refine_stopped")
    assert stopped["iteration"] == 6 and "fresh L-BFGS start" in stopped["why"]
    assert summary["refined"] == 20
    assert train(cfg, run, resume=True)["refined"] == 20
    assert len(_records(run, "refine")) == 6


def test_patience_zero_never_stops_early(data, monkeypatch):
    from tsym.runtime.training import refine as refine_mod

    class Flat:
        def __init__(self, params, r):
            pass

        def step(self, closure):
            return closure()  # the weights never move: every iteration stalls

    monkeypatch.setattr(refine_mod, "_lbfgs", Flat)
    cfg = make_config(data / "data.extxyz", max_steps=2, log_every=0)
    cfg["refine"] = {"iterations": 5, "patience": 0}
    assert train(cfg, data / "flat")["refined"] == 5
    assert len(_records(data / "flat", "refine")) == 5
    assert not _records(data / "flat", "refine_stopped")
