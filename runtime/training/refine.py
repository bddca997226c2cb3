"""Refinement after the AdamW steps: full-batch L-BFGS from the best checkpoint (``refine:``).

Minibatch AdamW stops improving once its gradient noise is as large as what is left to learn;
on small training sets a deterministic full-batch method goes further.  :func:`refine` runs
``torch.optim.LBFGS`` with a strong-Wolfe line search on the training loss of the whole training
split (the same loss as training: summed over chunks of ``refine.chunk`` structures, gradients
accumulated, so the activations held are those of one chunk; the chunks' graphs are built once),
starting from ``best.pt``.  After each iteration the validation loss (without a validation split:
the training loss) decides whether ``best.pt`` takes the new weights, so the chosen model never
gets worse on the validation split; the test split is scored afterwards as always.  A ``refine``
record in ``metrics.jsonl`` gives the training loss where the iteration began.

In a multi-process run each process takes its part of every chunk and the gradients are summed
(as in a training step), so every process takes the same L-BFGS steps.

An L-BFGS run can stall: its strong-Wolfe line search finds no lower loss along the direction its
history gives, and every later iteration repeats the same failed search (in float32 this is
where the loss's rounding noise is as large as what a step could gain).  After ``patience``
iterations in a row that do not lower the training loss, the history is dropped and L-BFGS starts
afresh from the current weights (a steepest-descent step first); when a fresh start does not lower
the loss either within ``patience`` iterations, refinement ends there (a ``refine_stopped``
record) instead of spending the remaining iterations on the same search.

Interrupting (SIGTERM, Ctrl-C) writes ``last.pt`` with the iterations done; resuming runs the
rest from ``best.pt`` (the L-BFGS history starts afresh).
"""
from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

__all__ = ["refine"]


def refine(tr) -> None:
    """Run the ``refine`` section's iterations still to do on the trainer ``tr``."""
    r, d = tr.cfg.refine, tr.dist
    todo = r.iterations - tr.refined
    if todo <= 0:
        return
    d.barrier()
    if not tr.load_best() and tr.ema:
        tr.net.model.load_state_dict(tr.ema.merged(tr.net.model))
    ema, tr.ema = tr.ema, None  # L-BFGS moves the weights themselves
    try:
        _iterate(tr, todo)
    finally:
        tr.ema = ema
        if ema:  # the average restarts at the refined weights
            ema.load_state_dict(dict(tr.net.model.named_parameters()))
    tr.save("last.pt")  # also after a signal: resuming runs the iterations left


def _chunks(tr) -> list:
    """This process's batched graphs of the training split, with their weights (0: stand-in)."""
    n, size = len(tr.splits["train"]), tr.cfg.refine.chunk
    shards = tr.shards([list(range(a, min(a + size, n))) for a in range(0, n, size)])
    graphs = list(tr.loaded(tr.splits["train"], [shard for shard, _ in shards]))
    return [(graph, weight) for (_, weight), graph in zip(shards, graphs)]


def _closure(tr, chunks: list, totals: torch.Tensor, params: list):
    """The training loss of the whole split and its gradient (summed over processes)."""
    d = tr.dist

    def closure() -> torch.Tensor:
        for p in params:
            p.grad = None
        value = torch.zeros((), dtype=torch.float64, device=d.device)
        for graph, weight in chunks:
            nums, _, _ = tr.loss_terms(tr.ddp(graph, normalised=True), graph, weight)
            loss = tr.weighted(nums, totals)
            (loss * d.world).backward()  # DDP averages gradients over processes: sum them
            value += loss.detach().to(torch.float64)
        return d.sum(value)

    return closure


def _totals(tr, chunks: list) -> torch.Tensor:
    """Labelled items per head over the whole training split (the loss's denominators)."""
    d = tr.dist
    counts = torch.zeros(len(tr.losses), dtype=torch.float64, device=d.device)
    with torch.no_grad():
        for graph, weight in chunks:
            _, _, c = tr.loss_terms(tr.net(graph, normalised=True), graph, weight)
            counts += torch.tensor(c, dtype=torch.float64, device=d.device)
    return d.sum(counts).clamp_min(1.0)


def _lbfgs(params: list, r) -> torch.optim.LBFGS:
    # no absolute tolerances: torch's defaults (gradient 1e-7, loss change 1e-9) end the
    # iterations early on a normalised loss of 1e-6, long before the line search runs out
    return torch.optim.LBFGS(params, lr=1.0, max_iter=r.evaluations, history_size=r.history,
                             tolerance_grad=0.0, tolerance_change=0.0,
                             line_search_fn="strong_wolfe")


def _iterate(tr, todo: int) -> None:
    r, d = tr.cfg.refine, tr.dist
    params = [p for p in tr.net.parameters() if p.requires_grad]
    chunks = _chunks(tr)
    closure = _closure(tr, chunks, _totals(tr, chunks), params)
    opt = _lbfgs(params, r)
    started = time.time()
    lowest, stalled, fresh = math.inf, 0, True  # fresh: no decrease since the last (re)start
    for _ in range(todo):
        tr.net.train()
        train_loss = float(opt.step(closure))  # the loss where this iteration began
        finite = math.isfinite(train_loss) and all(bool(torch.isfinite(p).all()) for p in params)
        valid = tr.evaluate(tr.splits["valid"]) if finite and tr.splits["valid"] else None
        metric = valid["loss"] if valid else train_loss
        tr.refined += 1
        record = {"kind": "refine", "iteration": tr.refined, "step": tr.step,
                  "train_loss": train_loss, "time": time.time() - started}
        if valid:
            record.update(valid_loss=valid["loss"], valid=valid["heads"])
        tr.log(record)
        if d.main:
            tqdm.write(f"refine {tr.refined:4d}  train {train_loss:.4g}  valid "
                       f"{valid['loss'] if valid else float('nan'):.4g}  {record['time']:.1f}s")
        if not finite:  # a line search into overflow: go back to the best weights
            _stop(tr, "the loss or the weights are no longer finite; best.pt is kept")
            tr.load_best()
            break
        if metric < tr.best_valid:
            tr.best_valid = metric
            tr.save("best.pt")
        if train_loss < lowest:
            if lowest < math.inf:  # a decrease since the last (re)start
                fresh = False
            lowest, stalled = train_loss, 0
        else:
            stalled += 1
        if r.patience and stalled >= r.patience:
            if fresh:
                _stop(tr, f"{r.patience} iterations from a fresh L-BFGS start did not lower "
                          f"the training loss ({lowest:.6g})")
                break
            opt, stalled, fresh = _lbfgs(params, r), 0, True  # drop the stalled history
            tr.log({"kind": "refine_restart", "iteration": tr.refined, "step": tr.step})
        tr.signum = tr.signals.received(d.world, d.device)
        if tr.signum is not None:
            return


def _stop(tr, why: str) -> None:
    """End refinement early: a ``refine_stopped`` record, and no iterations left to resume."""
    tr.log({"kind": "refine_stopped", "iteration": tr.refined, "step": tr.step, "why": why})
    tr.refined = tr.cfg.refine.iterations
