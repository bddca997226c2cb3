"""What pretrained backbones share: the identity of the file they were built from, kept in tsym's
checkpoint and checked when it is reloaded, and loading a MACE foundation model file.

A pretrained backbone (``sevenn``, ``mace`` with ``checkpoint=PATH``) records the name it was
given in ``backbone_kwargs`` (so eval, predict, export and ``--resume`` build from the same file)
and the sha256 of that file in a buffer, ``checkpoint_digest`` ``[32]`` uint8, saved in the
state dict; :func:`check_digest` refuses a reload whose file has another sha256.

>>> import tempfile, os
>>> with tempfile.NamedTemporaryFile(delete=False) as f:
...     _ = f.write(b"weights")
>>> checkpoint_identity(f.name)[:16]
'9a129038d9a00aed'
>>> os.unlink(f.name)
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping

import torch

from ase.data import chemical_symbols

from tsym.runtime import keys
from tsym.runtime.errors import CheckpointError, ModelConfigError, UnknownElementError

__all__ = ["checkpoint_identity", "register_digest", "check_digest", "load_mace_file",
           "check_elements"]

DIGEST = "checkpoint_digest"


def checkpoint_identity(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a checkpoint file: what tsym records of the weights it loaded."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def register_digest(module: torch.nn.Module, sha256: str) -> None:
    """Keep ``sha256`` in ``module``'s state dict (buffer ``checkpoint_digest`` ``[32]``)."""
    module.register_buffer(DIGEST, torch.tensor(list(bytes.fromhex(sha256)), dtype=torch.uint8))


def check_digest(module: torch.nn.Module, state_dict: Mapping, prefix: str, owner: str,
                 name: str) -> None:
    """Raise :class:`CheckpointError` when ``state_dict`` was saved from another file than the
    one ``module`` was built from (call it from ``module._load_from_state_dict``)."""
    saved = state_dict.get(prefix + DIGEST)
    mine = getattr(module, DIGEST, None)
    if saved is None or mine is None or torch.equal(saved.cpu(), mine.cpu()):
        return
    raise CheckpointError(
        f"backbone {owner!r}: the model was trained on a checkpoint with sha256 "
        f"{bytes(saved.tolist()).hex()[:16]}..., but {name!r} is now "
        f"{bytes(mine.tolist()).hex()[:16]}... (another package version or file); use the "
        "original file (for sevenn, the version of constraints.txt)")


def load_mace_file(path: str | os.PathLike) -> torch.nn.Module:
    """A MACE model saved whole with ``torch.save`` (MACE-MP / MACE-OFF ``.model`` files, and
    what ``mace_run_train`` writes).  The file is unpickled: load only files you trust."""
    if not os.path.isfile(path):
        raise ModelConfigError(f"backbone 'mace': checkpoint {os.fspath(path)!r} is not a file "
                               "(a MACE .model file, e.g. MACE-MP or MACE-OFF, saved whole)")
    try:
        model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - unpickling raises many kinds
        raise ModelConfigError(f"backbone 'mace': {os.fspath(path)!r} does not load with "
                               f"torch.load: {type(err).__name__}: {err}") from None
    missing = [a for a in ("products", "interactions", "atomic_numbers", "r_max")
               if not hasattr(model, a)]
    if not isinstance(model, torch.nn.Module) or missing:
        raise ModelConfigError(f"backbone 'mace': {os.fspath(path)!r} holds a "
                               f"{type(model).__name__}, not a MACE model (no "
                               f"{', '.join(missing) or 'torch module'})")
    return model


def check_elements(backbone: torch.nn.Module, graphs: Iterable[Mapping], source: str) -> None:
    """Before training: every element of ``graphs`` (graph dicts) is one the backbone covers
    (its ``elements``, e.g. a checkpoint's element table), else :class:`UnknownElementError`
    naming the element, the backbone and ``source``.  A backbone without ``elements``: no check."""
    covered = getattr(backbone, "elements", None)
    if not covered:
        return
    seen: set[int] = set()
    for graph in graphs:
        seen.update(int(z) for z in graph[keys.ATOMIC_NUMBERS].unique().tolist())
    missing = sorted(seen - {int(z) for z in covered})
    if missing:
        names = ", ".join(f"{chemical_symbols[z] if 0 < z < len(chemical_symbols) else z} "
                          f"(Z={z})" for z in missing)
        what = getattr(backbone, "checkpoint_name", None)
        owner = getattr(backbone, "name", None) or type(backbone).__name__
        raise UnknownElementError(
            f"{source}: the data hold {names}, which backbone {owner!r}"
            f"{f' (checkpoint {what!r})' if what else ''} does not cover; remove those "
            "structures or choose a checkpoint whose element table has them")
