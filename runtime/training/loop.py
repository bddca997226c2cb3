"""``tsym train``: the training loop (AdamW, warm-up + cosine or plateau, EMA, DDP, exact resume).

>>> summary = train("configs/alpha.yaml", "runs/alpha")              # doctest: +SKIP
>>> summary["best_valid_loss"], summary["steps"]                      # doctest: +SKIP

The run directory receives ``config.yaml`` (the resolved config), ``split.json``,
``metrics.jsonl`` (step, epoch and test records) and the checkpoints ``last.pt`` (every
``checkpoint_every`` steps and at each evaluation) and ``best.pt`` (lowest validation loss, EMA
weights); see :mod:`tsym.runtime.model.checkpoint` for their content and
``tsym.build_model(checkpoint=run_dir)`` to predict with them.

Divergence: every step checks each head's loss (before the update), the gradient norm (with
``grad_clip``) and the parameters (after it); the first non-finite value stops the run with
:class:`DivergedError` (step, head, the checkpoints kept), before anything non-finite is saved, so
``last.pt`` and ``best.pt`` keep their last finite state; a ``diverged`` record ends
``metrics.jsonl``.  A non-finite validation loss stops the run the same way.  Every JSON record
is valid JSON (non-finite numbers as ``null``).

Determinism: the data order of epoch ``e`` is a permutation drawn from a generator seeded with
``(seed, e)``; the checkpoint holds the step counters, optimiser, scheduler, EMA and RNG states, so
``resume=True`` continues exactly where ``last.pt`` stopped (same parameters and losses as an
uninterrupted run, bitwise on one CPU process).

Multi-process: launched by ``torchrun`` (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` in the
environment) the model is wrapped in DistributedDataParallel (gloo on CPU, nccl on GPUs); each
global batch of ``batch_size`` structures is sharded ``batch[rank::world_size]``; each rank's loss
is its share of the global sum divided by the global number of labelled items, times the world
size, so the averaged gradient is the gradient of the global batch's loss.  Only rank 0 writes.

Refinement: with a ``refine`` section, the finished run goes on with full-batch L-BFGS from
``best.pt`` (:mod:`tsym.runtime.training.refine`; ``refine`` records in ``metrics.jsonl``) before
the test split is scored.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tsym.runtime import keys
from tsym.runtime.errors import DivergedError, TrainError, TrainInterrupted
from tsym.runtime.finite import nonfinite_parameters
from tsym.runtime.training._rundir import RunDir
from tsym.runtime.training.guard import RunLock, StopSignals
from tsym.runtime.training.distributed import Dist, setup_dist
from tsym.runtime.training.ema import EMA
from tsym.runtime.training.messages import divergence_message
from tsym.runtime.training.schedule import make_scheduler
from tsym.runtime.training.setup import Batcher, load_splits, plans_for
from tsym.runtime.training.config import TrainConfig, load_config
from tsym.runtime.graph import batch_graphs
from tsym.runtime.model import TrainedModel, build_model
from tsym.runtime.nn.finetune import apply_finetune, parameter_groups
from tsym.runtime.nn.pretrained import check_elements
from tsym.runtime.model.normalisation import Normalisation
from tsym.runtime.training.losses import HeadLoss, fit_normalisations
from tsym.runtime.training.refine import refine

__all__ = ["train"]

def train(config, run_dir: str | os.PathLike, *, resume: bool = False,
          stop_after: int | None = None) -> dict:
    """Train the model that ``config`` describes; write the run to ``run_dir``.

    Parameters
    ----------
    config : path to a YAML file, dict, or TrainConfig
    run_dir : path
        Created if needed.  Without ``resume`` it must not hold a ``last.pt`` already.
    resume : bool
        Continue from ``run_dir/last.pt``: the config must match the stored one (except for
        the keys in ``_rundir.RESUMABLE_CHANGES`` and the ``refine`` section, so a finished run
        can be refined), and the data, split and specs the run started with
        (else :class:`TrainError` names the difference).
    stop_after : int, optional
        Stop this invocation after optimiser step ``stop_after`` (``last.pt`` is written), e.g.
        to fit a job time limit; ``resume=True`` carries on.

    Returns
    -------
    dict
        ``run_dir``, ``steps`` (optimiser steps done in total), ``epochs``, ``finished``,
        ``step_losses`` (``[(step, loss)]`` of this invocation), ``best_valid_loss``,
        ``best_step``, ``selected_on`` (``"valid"``, or ``"train"`` when there is no valid
        split: ``best_valid_loss`` is then a training loss), ``valid`` (last evaluation),
        ``test`` (best model on the test split, or None), ``world_size``.

    Raises
    ------
    TrainError
        Another training holds ``run_dir`` (a lock for the whole run), a checkpoint is in the way,
        or a resume whose inputs differ from the run's start.
    TrainInterrupted
        SIGTERM or SIGINT (Ctrl-C): ``last.pt`` was written after the current step; resume goes
        on exactly as after any other checkpoint.
    """
    cfg = load_config(config)
    dist = setup_dist(cfg.training.device)
    try:
        with (RunLock(run_dir) if dist.main else contextlib.nullcontext(),
              StopSignals(announce=dist.main) as signals):
            return Trainer(cfg, dist, Path(run_dir), resume, stop_after, signals).run()
    finally:
        dist.close()


class Trainer(RunDir):
    """One training run (``train`` makes it and calls :meth:`run`).

    Its public surface, what :mod:`~tsym.runtime.training.refine` (and a benchmark's timing hook)
    drive: :meth:`loaded` and :meth:`shards` (the training split as device batches),
    :meth:`loss_terms` and :meth:`weighted` (the loss of a batch and its normalisation),
    :meth:`evaluate` (the validation metrics), :meth:`after_step`, and from :class:`RunDir`
    ``save``, ``load_best`` and ``log`` (checkpoints and ``metrics.jsonl``).
    """

    def __init__(self, cfg: TrainConfig, dist: Dist, run_dir: Path, resume: bool,
                 stop_after: int | None, signals: StopSignals):
        self.cfg, self.dist, self.run_dir, self.stop_after = cfg, dist, run_dir, stop_after
        self.signals = signals
        t = cfg.training
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.model.dtype]
        ckpt = self._check_dir(resume)
        torch.manual_seed(t.seed)
        np.random.seed(t.seed % 2**32)
        plans = plans_for(cfg)
        self.heads = {h.name: h for h in cfg.heads}
        net = build_model(plans, backbone=cfg.model.backbone, cutoff=cfg.model.cutoff,
                          seed=t.seed, dtype=self.dtype,
                          backbone_kwargs=cfg.model.backbone_kwargs,
                          head_kwargs=cfg.model.head_kwargs)  # first: its elements check the data
        self.splits, self.split_info = load_splits(cfg, plans, self.dtype, verbose=dist.main,
                                                   max_z=net.max_z)
        check_elements(net.backbone, (g for s in self.splits.values() for g in s), cfg.source)
        apply_finetune(net, cfg.model.finetune)  # before the optimiser sees requires_grad
        if not self.splits["train"]:
            raise TrainError(f"{cfg.source}: the training split is empty")
        if ckpt is not None:
            self._check_inputs(ckpt, plans)
            norms = {k: Normalisation.from_dict(v) for k, v in ckpt["normalisation"].items()}
        else:
            try:
                norms = fit_normalisations(plans, self.splits["train"])
            except ValueError as err:
                raise TrainError(f"{cfg.source}: {err}") from None
        if cfg.model.compile:
            net.compile_for_speed()
        self.net = TrainedModel(net, norms).to(self.dist.device)
        self.losses = {p.name: HeadLoss(p, norms[p.name], self.heads[p.name].loss_space,
                                        self.heads[p.name].l_weights) for p in plans}
        self.ddp = self.net
        if self.dist.world > 1:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=ids, find_unused_parameters=self._has_unused())
        o = cfg.optimiser
        self.opt = torch.optim.AdamW(parameter_groups(self.net, o.lr, o.backbone_lr), lr=o.lr,
                                     betas=tuple(o.betas), eps=o.eps,
                                     weight_decay=o.weight_decay)
        n_train, bs = len(self.splits["train"]), t.batch_size
        self.steps_per_epoch = math.ceil(n_train / bs)
        limits = [t.max_steps] if t.max_steps else []
        limits += [t.epochs * self.steps_per_epoch] if t.epochs else []
        self.total_steps = min(limits)
        if cfg.schedule.warmup_steps > self.total_steps:
            raise TrainError(f"{cfg.source}: schedule.warmup_steps is {cfg.schedule.warmup_steps}"
                             f", more than the run's {self.total_steps} optimiser steps (the "
                             "learning rate would never reach optimiser.lr)")
        self.sched = make_scheduler(cfg.schedule, self.opt, self.total_steps)
        self.ema = EMA(self.net.model, t.ema_decay) if t.ema_decay else None
        self.step, self.epoch_loss, self.epoch_steps = 0, 0.0, 0
        self.best_valid, self.best_step, self.last_valid = math.inf, -1, None
        self.refined = 0  # refine iterations done
        self.saved: dict[str, int] = {}  # checkpoint file -> step it holds (finite state only)
        self._init_dir(ckpt)  # nothing is written before the config, data and model are checked
        if ckpt is not None:
            self._restore(ckpt)

    def _has_unused(self) -> bool:
        """Whether some parameter gets no gradient from the heads (DDP must then look for it)."""
        graph = self._graph(self.splits["train"], [0])
        sum(v.sum() for v in self.net(graph, normalised=True).values()).backward()
        unused = any(p.grad is None for p in self.net.parameters() if p.requires_grad)
        self.net.zero_grad(set_to_none=True)
        return unused

    # ----------------------------------------------------------------------------- batches
    def _epoch_order(self, epoch: int) -> list[int]:
        seed = int(np.random.SeedSequence([self.cfg.training.seed, epoch]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(seed)
        return torch.randperm(len(self.splits["train"]), generator=gen).tolist()

    def _graph(self, graphs: list, indices: list[int]) -> dict:
        g = batch_graphs([graphs[i] for i in indices])
        return {k: v.to(self.dist.device) for k, v in g.items()}

    def loss_terms(self, out: dict, graph: dict, weight: float = 1.0):
        """Per head: summed loss, summed absolute error (data units), number of labelled items."""
        nums, abs_err, counts = [], [], []
        for name, loss in self.losses.items():
            pred, label = out[name], graph[keys.label(name)]  # [G or N, d], [G or N, 3, ..]
            n_atoms = graph[keys.NUM_ATOMS] if loss.norm.per_atom_shift else None
            mask = graph.get(keys.mask(name))
            if mask is not None:
                pred, label = pred[mask], label[mask]
            nums.append(loss(pred, label, n_atoms) * weight)
            abs_err.append(loss.abs_error(pred.detach(), label, n_atoms) * weight)
            counts.append(pred.shape[0] * weight)
        return nums, abs_err, counts

    def weighted(self, nums: list, totals: torch.Tensor):
        """The loss: each head's summed loss over its labelled items (``totals`` [H], all
        processes), times the head's weight, summed over heads."""
        return sum(self.heads[name].weight * num / totals[k].clamp_min(1.0).to(num.dtype)
                   for k, (name, num) in enumerate(zip(self.losses, nums)))

    def shards(self, batches: list[list[int]]) -> list[tuple[list[int], float]]:
        """This process's part of each global batch, and its weight (0: a stand-in structure)."""
        d, out = self.dist, []
        for indices in batches:
            shard = indices[d.rank::d.world]
            out.append((shard, 1.0) if shard else (indices[:1], 0.0))
        return out

    def loaded(self, graphs: list, shards: list[list[int]]):
        """Batched graphs of ``shards`` on the device (batched by worker processes if asked)."""
        workers = self.cfg.training.num_workers
        if workers:
            loader = torch.utils.data.DataLoader(shards, batch_size=None, num_workers=workers,
                                                 collate_fn=Batcher(graphs))
            return ({k: v.to(self.dist.device) for k, v in g.items()} for g in loader)
        return (self._graph(graphs, shard) for shard in shards)

    def _train_step(self, graph: dict, weight: float) -> float:
        d = self.dist
        out = self.ddp(graph, normalised=True)
        nums, _, counts = self.loss_terms(out, graph, weight)
        total = d.sum(torch.tensor(counts, dtype=torch.float64, device=d.device))  # [H]
        per_head = d.sum(torch.stack([n.detach().to(torch.float64) for n in nums]))  # [H]
        if not bool(torch.isfinite(per_head).all()):
            self._diverged("loss", per_head.tolist())
        loss = self.weighted(nums, total)
        (loss * d.world).backward()
        t = self.cfg.training
        if t.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), t.grad_clip)
            if not bool(torch.isfinite(norm)):
                self._diverged("gradient", per_head.tolist())
        self.sched.before_step(self.step)
        self.lr = self.opt.param_groups[0]["lr"]  # the rate of this step
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.after_step()
        bad = nonfinite_parameters(self.net.model)
        if bad:
            self._diverged("parameter", per_head.tolist(), bad)
        if self.ema:
            self.ema.update(self.net.model)
        return float(d.sum(loss.detach().to(torch.float64)))

    def _diverged(self, what: str, losses: list[float], params: list[str] | None = None,
                  where: str = "training") -> None:
        """Log and raise :class:`DivergedError`; nothing non-finite is saved."""
        step = self.step + 1 if where == "training" else self.step
        losses = dict(zip(self.losses, losses))
        heads = tuple(n for n, v in losses.items() if not math.isfinite(v))
        self.log({"kind": "diverged", "step": step, "cause": what, "heads": list(heads),
                   "losses": losses, "parameters": params or []})
        raise DivergedError(divergence_message(self.run_dir, step, what, where, losses,
                                               params or [], self.saved), step, heads,
                            dict(self.saved))

    @torch.no_grad()
    def evaluate(self, graphs: list) -> dict:
        """Loss and MAE (data units) per head on ``graphs``, with the EMA weights."""
        d, bs, h = self.dist, self.cfg.training.batch_size, len(self.losses)
        sums = torch.zeros(3 * h, dtype=torch.float64, device=d.device)
        was = self.net.training
        self.net.eval()
        with self.ema.applied(self.net.model) if self.ema else contextlib.nullcontext():
            for start in range(0, len(graphs), bs):
                shard = list(range(start, min(start + bs, len(graphs))))[d.rank::d.world]
                if shard:
                    graph = self._graph(graphs, shard)
                    nums, abs_err, counts = self.loss_terms(self.net(graph, normalised=True), graph)
                    sums += torch.tensor([float(v) for v in (*nums, *abs_err, *counts)],
                                         dtype=torch.float64, device=d.device)
        self.net.train(was)
        sums = d.sum(sums).tolist()
        result, total = {}, 0.0
        for k, name in enumerate(self.losses):
            n = max(sums[2 * h + k], 1.0)
            result[name] = {"loss": sums[k] / n, "mae": sums[h + k] / n}
            total += self.heads[name].weight * result[name]["loss"]
        return {"loss": total, "heads": result}

    # -------------------------------------------------------------------------------- loop
    def _end_of_epoch(self, epoch: int, started: float) -> tuple[bool, bool]:
        """Evaluate (if due) and step a plateau schedule; (evaluated, new best)."""
        t = self.cfg.training
        train_loss = self.epoch_loss / max(self.epoch_steps, 1)
        self.epoch_loss, self.epoch_steps = 0.0, 0
        if (epoch + 1) % t.eval_every and self.step < self.total_steps:
            return False, False
        valid = self.evaluate(self.splits["valid"]) if self.splits["valid"] else None
        if valid and not math.isfinite(valid["loss"]):
            self._diverged("loss", [v["loss"] for v in valid["heads"].values()],
                           where="validation")
        self.last_valid = valid
        metric = valid["loss"] if valid else train_loss
        self.sched.on_eval(metric, self.step)
        lr = self.opt.param_groups[0]["lr"]
        record = {"kind": "epoch", "epoch": epoch + 1, "step": self.step,
                  "train_loss": train_loss, "lr": lr, "time": time.time() - started}
        if valid:
            record.update(valid_loss=valid["loss"], valid=valid["heads"])
        self.log(record)
        if self.dist.main:
            heads = "".join(f"  {n}: loss {v['loss']:.4g} mae {v['mae']:.4g}"
                            for n, v in (valid["heads"].items() if valid else ()))
            tqdm.write(f"epoch {epoch + 1:4d}  step {self.step:6d}  train {train_loss:.4g}  "
                       f"valid {metric if valid else float('nan'):.4g}{heads}  lr {lr:.3g}  "
                       f"{record['time']:.1f}s")
        if metric < self.best_valid:
            self.best_valid, self.best_step = metric, self.step
            return True, True
        return True, False

    def after_step(self, loss: float, epoch: int, started: float, bar) -> bool:
        """Count, log, evaluate at the end of an epoch, checkpoint; True to stop here."""
        t = self.cfg.training
        self.step += 1
        self.epoch_loss += loss
        self.epoch_steps += 1
        self.history.append((self.step, loss))
        bar.update(1)
        bar.set_postfix(loss=f"{self.epoch_loss / self.epoch_steps:.4g}")
        if t.log_every and self.step % t.log_every == 0:
            self.log({"kind": "step", "step": self.step, "epoch": epoch + 1, "loss": loss,
                       "lr": self.lr})
        end = self.step % self.steps_per_epoch == 0 or self.step >= self.total_steps
        evaluated, best = self._end_of_epoch(epoch, started) if end else (False, False)
        self.signum = self.signals.received(self.dist.world, self.dist.device)
        stopped = self.signum is not None or (
            self.stop_after is not None and self.step >= self.stop_after)
        state = self.save("best.pt") if best else None
        if (evaluated or stopped or self.step >= self.total_steps
                or (t.checkpoint_every and self.step % t.checkpoint_every == 0)):
            self.save("last.pt", state)
        return stopped

    def run(self) -> dict:
        t, d = self.cfg.training, self.dist
        if d.main and self.step == 0:
            self.split_info.save(self.run_dir / "split.json")
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=None if (t.progress and d.main) else True,  # None: a TTY only
                   leave=False)
        self.history, started, stopped, self.signum = [], time.time(), False, None
        while self.step < self.total_steps and not stopped:
            epoch = self.step // self.steps_per_epoch
            order = self._epoch_order(epoch)
            first = self.step % self.steps_per_epoch
            batches = [order[b * t.batch_size:(b + 1) * t.batch_size]
                       for b in range(first, self.steps_per_epoch)]
            shards = self.shards(batches)
            graphs = self.loaded(self.splits["train"], [shard for shard, _ in shards])
            for (_, weight), graph in zip(shards, graphs):
                stopped = self.after_step(self._train_step(graph, weight), epoch, started, bar)
                if stopped or self.step >= self.total_steps:
                    break
        bar.close()
        finished = self.step >= self.total_steps
        if finished and self.signum is None:
            refine(self)
        if self.signum is not None:
            raise TrainInterrupted(self.signum, self.run_dir, self.step, self.cfg.source)
        test = self._test() if finished and self.splits["test"] else None
        return {"run_dir": str(self.run_dir), "steps": self.step, "finished": finished,
                "epochs": self.step / self.steps_per_epoch, "step_losses": self.history,
                "best_valid_loss": self.best_valid, "best_step": self.best_step,
                "selected_on": "valid" if self.splits["valid"] else "train",
                "valid": self.last_valid, "test": test, "world_size": d.world,
                "refined": self.refined}

    def _test(self) -> dict:
        """The test split, evaluated with the weights of ``best.pt``."""
        self.dist.barrier()
        self.load_best()
        ema, self.ema = self.ema, None  # best.pt already holds the EMA weights
        try:
            result = self.evaluate(self.splits["test"])
        finally:
            self.ema = ema
        self.log({"kind": "test", "step": self.step, "best_step": self.best_step, **result})
        return result

