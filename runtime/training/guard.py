"""What keeps a training run honest: a lock on its folder, a fingerprint of its inputs, and a
polite stop on SIGTERM / Ctrl-C.

Used by :mod:`tsym.runtime.training.loop`.

* :class:`RunLock` holds ``fcntl.flock`` on ``RUN_DIR/.lock`` for the whole run: a second
  training into the same folder is refused at once; the kernel drops the lock when its process
  dies, so a killed run never blocks the next one.
* :func:`inputs_fingerprint` records, per data file, the frame index and a 64-bit digest of every
  record read (numbers, positions, cell, pbc, labels and masks as loaded), the frames of each
  split, and the canonical hash of each head's spec.  The checkpoints keep it; on resume
  :func:`fingerprint_changes` names the first difference (a data file, a split, a spec).
* :class:`StopSignals` turns SIGTERM and SIGINT into a flag the loop reads after each step; the
  loop then writes ``last.pt`` and :class:`~tsym.runtime.errors.TrainInterrupted` ends the run
  (exit ``128 + signal``).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from tsym.compiler import compile_text
from tsym.runtime.errors import TrainError, TsymError

__all__ = ["RunLock", "record_digest", "inputs_fingerprint",
           "fingerprint_changes", "resume_refusal", "StopSignals"]

LOCK_NAME = ".lock"


# ------------------------------------------------------------------------------------------ lock
class RunLock:
    """An exclusive ``flock`` on ``run_dir/.lock`` (the folder is created if needed).

    >>> with RunLock("runs/a"):                                        # doctest: +SKIP
    ...     pass  # a second RunLock("runs/a") here raises TrainError
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if self.path.is_dir() and not self.path.is_symlink():
                raise TrainError(f"{self.path}: the run lock is a folder, not a file; remove it "
                                 f"(rmdir {self.path}) if no training uses it") from None
            raise TrainError(f"{self.run_dir}: cannot use this run directory ({err.strerror})"
                             ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise TrainError(f"{self.run_dir}: another training is using this run directory "
                             f"({holder}); wait for it to end, or choose another --run-dir"
                             ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
                     .encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None


# ----------------------------------------------------------------------------------- fingerprint
def record_digest(record) -> int:
    """A signed 64-bit digest of a record as loaded: atoms, cell, pbc, labels, masks, frame."""
    h = hashlib.blake2b(digest_size=8)
    atoms = record.atoms
    for array in (np.asarray(atoms.numbers, dtype=np.int64),
                  np.asarray(atoms.positions, dtype=np.float64),
                  np.asarray(atoms.cell[:], dtype=np.float64),
                  np.asarray(atoms.pbc, dtype=np.bool_)):
        h.update(np.ascontiguousarray(array).tobytes())
    for name in sorted(record.labels):
        h.update(name.encode())
        h.update(np.ascontiguousarray(record.labels[name], dtype=np.float64).tobytes())
        if name in record.masks:
            h.update(np.ascontiguousarray(record.masks[name], dtype=np.bool_).tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


def _file_entry(dataset) -> dict:
    return {"source": str(dataset.source),
            "frames": torch.tensor([r.index for r in dataset], dtype=torch.int64),
            "digests": torch.tensor([record_digest(r) for r in dataset], dtype=torch.int64)}


def inputs_fingerprint(files: dict, splits: dict, plans) -> dict:
    """The checkpoint's ``inputs`` entry (plain values and int64 tensors: ``weights_only``).

    ``files``: role (``train``, ``valid``, ``test``) -> the Dataset read from that file;
    ``splits``: split name -> its Dataset; ``plans``: the heads' plans.
    """
    return {"data": {role: _file_entry(ds) for role, ds in files.items()},
            "split": {name: torch.tensor([r.index for r in ds], dtype=torch.int64)
                      for name, ds in splits.items()},
            "spec": {p.name: p.spec_hash for p in plans},
            "spec_source": {p.name: p.source for p in plans}}


def fingerprint_changes(old: dict, new: dict, new_plans: dict | None = None) -> list[str]:
    """Why ``new`` (this invocation's inputs) is not ``old`` (the run's start), first to last.

    ``new_plans`` (name -> plan) lets a spec difference name the changed field (e.g. ``pool was
    'sum', now 'mean'``).
    """
    old_specs = old.get("spec_source")
    out = []
    for role in sorted(set(old["data"]) | set(new["data"])):
        a, b = old["data"].get(role), new["data"].get(role)
        if a is None or b is None:
            out.append(f"data: the run started {'with' if a else 'without'} a {role} file")
            continue
        out += _data_change(role, a, b)
    if not out:  # the same records: a different split is the split's own doing
        for name in sorted(set(old["split"]) | set(new["split"])):
            a, b = old["split"].get(name), new["split"].get(name)
            if a is None or b is None or not torch.equal(a, b):
                out.append(f"split: the {name} split is not the one the run started with "
                           f"({_count(a)} records then, {_count(b)} now)")
    for name in sorted(set(old["spec"]) | set(new["spec"])):
        a, b = old["spec"].get(name), new["spec"].get(name)
        if a != b:
            what = ("is new" if a is None else "is gone" if b is None
                    else _spec_change(name, old_specs, new_plans))
            out.append(f"spec: head '{name}' {what}")
    return out


def resume_refusal(ckpt: dict, inputs: dict, plans) -> str | None:
    """Why the checkpoint ``ckpt`` cannot go on with ``inputs`` (None: it can)."""
    if "inputs" not in ckpt:
        return ("the checkpoint has no record of its inputs (written by an older tsym), so a "
                "resume cannot be checked; start a new run")
    changes = fingerprint_changes(ckpt["inputs"], inputs, {p.name: p for p in plans})
    if not changes:
        return None
    more = len(changes) - 1
    return changes[0] + (f" (and {more} more difference(s))" if more else "")


def _count(t) -> int:
    return 0 if t is None else int(t.numel())


def _data_change(role: str, a: dict, b: dict) -> list[str]:
    where = b["source"]
    fa, fb = a["frames"].tolist(), b["frames"].tolist()
    if fa != fb:
        gone = sorted(set(fa) - set(fb))
        new = sorted(set(fb) - set(fa))
        what = (f"record {gone[0]} is gone" if gone else f"record {new[0]} is new" if new
                else "the records are in another order")
        return [f"data: {where} ({role}) has {len(fb)} records, the run started with {len(fa)} "
                f"({what})"]
    differ = (a["digests"] != b["digests"]).nonzero().flatten().tolist()
    if differ:
        return [f"data: {where}:record {fb[differ[0]]} differs from the run's start "
                f"(positions, cell or labels; {len(differ)} record(s) differ)"]
    return []


def _spec_change(name: str, old_specs: dict | None, new_plans: dict | None) -> str:
    if old_specs and new_plans and name in old_specs and name in new_plans:
        try:
            old = next(p for p in compile_text(old_specs[name], "<run start>") if p.name == name)
        except (TsymError, StopIteration):
            old = None
        if old is not None:
            a, b = old.to_dict(), new_plans[name].to_dict()
            keys = [k for k in a if k in b and a[k] != b[k] and k != "spec_hash"]
            if keys:
                return ", ".join(f"{k} was {a[k]!r}, now {b[k]!r}" for k in keys)
    return "compiles to another canonical spec than at the run's start"


# --------------------------------------------------------------------------------------- signals
class StopSignals:
    """While active, SIGTERM and SIGINT set :attr:`signum` (the loop stops after its step); a
    second one stops at once (``KeyboardInterrupt``).  Inactive outside the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, announce: bool = True):
        self.signum: int | None = None
        self.announce = announce
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            print(f"tsym train: {signal.Signals(signum).name} received; stopping after this step "
                  "and saving last.pt (send it again to stop at once)", file=sys.stderr,
                  flush=True)

    def received(self, world: int = 1, device=None) -> int | None:
        """The signal received by any of the ``world`` processes (they all stop at one step)."""
        signum = self.signum or 0
        if world > 1:
            flag = torch.tensor([signum], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag.item())
        return signum or None

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}
