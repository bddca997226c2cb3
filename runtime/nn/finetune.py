"""Fine-tuning a pretrained backbone: frozen (features cached per structure), full, or the last
``N`` interaction blocks; and the parameter groups of a separate backbone learning rate.

``finetune`` is ``"full"`` (every parameter trains: the default), ``"frozen"`` (no backbone
parameter trains, and :class:`FrozenBackbone` computes each structure's features once and then
reads them from a cache: a head trains at head speed after the first epoch), or an integer
``N >= 0``: the last ``N`` interaction blocks train, the embedding and earlier blocks stay as
loaded.  Blocks are read from the backbone (:func:`backbone_blocks`): SevenNet's numbered
modules (``0_*`` ... ``3_*``), MACE's ``interactions[i]`` with ``products[i]``, or a backbone's
own ``block_parameters()``.

>>> import torch
>>> net = torch.nn.Linear(2, 2)
>>> net.irreps_out = "2x0e"
>>> frozen = apply_finetune(net, "frozen")
>>> type(frozen).__name__, any(p.requires_grad for p in net.parameters())
('FrozenBackbone', False)
>>> list(frozen.state_dict()) == list(net.state_dict())  # as if unwrapped
True
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError

__all__ = ["FrozenBackbone", "apply_finetune", "backbone_blocks", "parameter_groups",
           "check_finetune"]

_FORWARDED = ("irreps_out", "cutoff", "elements", "max_z", "name", "parity", "checkpoint_name",
              "checkpoint_sha256")


def check_finetune(finetune, where: str = "finetune") -> None:
    """``"full"``, ``"frozen"`` or an integer >= 0, else :class:`ModelConfigError`."""
    if finetune in ("full", "frozen") or (isinstance(finetune, int) and not isinstance(
            finetune, bool) and finetune >= 0):
        return
    raise ModelConfigError(f"{where} must be 'full', 'frozen' or the number of last blocks to "
                           f"train (an integer >= 0), got {finetune!r}")


def _inner(backbone: torch.nn.Module) -> torch.nn.Module:
    """The network under tsym's wrappers (RestoreParity, FrozenBackbone)."""
    while True:
        inner = getattr(backbone, "frozen", None) or getattr(backbone, "backbone", None)
        if not isinstance(inner, torch.nn.Module):
            return backbone
        backbone = inner


def backbone_blocks(backbone: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """The parameters of each interaction block, first to last (module doc)."""
    net = _inner(backbone)
    if hasattr(net, "block_parameters"):
        return [list(ps) for ps in net.block_parameters()]
    if hasattr(net, "blocks") and hasattr(net, "net"):  # SevenNet: modules "<block>_<name>"
        return [[p for name, m in net.net.items() if name.split("_")[0] == b
                 for p in m.parameters()] for b in net.blocks]
    mace = getattr(net, "mace", None)
    if mace is not None and hasattr(mace, "interactions"):
        return [list(i.parameters()) + list(p.parameters())
                for i, p in zip(mace.interactions, mace.products)]
    raise ModelConfigError(f"backbone {type(net).__name__} does not say what its blocks are: "
                           "give it block_parameters() (one list of parameters per block) to "
                           "fine-tune its last blocks")


def apply_finetune(model: torch.nn.Module, finetune="full") -> torch.nn.Module:
    """Set ``requires_grad`` of the backbone's parameters for ``finetune`` (module doc); for
    ``"frozen"``, wrap the backbone in :class:`FrozenBackbone`.  ``model``: a ``TensorModel``
    (its ``backbone`` is changed in place; returned) or a backbone (returned, maybe wrapped)."""
    check_finetune(finetune)
    holder = model if hasattr(model, "backbone") and hasattr(model, "heads") else None
    backbone = holder.backbone if holder is not None else model
    if finetune == "full":
        backbone.requires_grad_(True)
        return model
    backbone.requires_grad_(False)
    if finetune == "frozen":
        frozen = backbone if isinstance(backbone, FrozenBackbone) else FrozenBackbone(backbone)
        if holder is None:
            return frozen
        holder.backbone = frozen
        return holder
    blocks = backbone_blocks(backbone)
    if finetune > len(blocks):
        raise ModelConfigError(f"finetune: {finetune} last blocks, but the backbone has "
                               f"{len(blocks)}")
    for params in blocks[len(blocks) - finetune:]:
        for p in params:
            p.requires_grad_(True)
    return model


def parameter_groups(model: torch.nn.Module, lr: float, backbone_lr: float | None) -> list[dict]:
    """AdamW parameter groups: the backbone's trainable parameters at ``backbone_lr``, all the
    others at ``lr`` (a group with no parameter is left out); one group when ``backbone_lr`` is
    None."""
    if backbone_lr is None:  # one group, in the order of model.parameters(), as always
        return [{"params": list(model.parameters()), "lr": lr}]
    backbone = getattr(model, "backbone", None)
    if backbone is None:  # TrainedModel: model.model is the TensorModel
        backbone = model.model.backbone
    ids = {id(p) for p in backbone.parameters()}
    own = [p for p in backbone.parameters() if p.requires_grad]
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": lr}]
    if own:
        groups.append({"params": own, "lr": backbone_lr})
    return groups


def _structure_keys(graph: Mapping[str, torch.Tensor]) -> tuple[list[str], list[slice]]:
    """A content hash (positions, atomic numbers, cell) and the atom slice of each structure."""
    positions = graph[keys.POSITIONS].detach().cpu()  # [N, 3]
    numbers = graph[keys.ATOMIC_NUMBERS].detach().cpu()  # [N]
    batch = graph.get(keys.BATCH)
    n = positions.shape[0]
    counts = (torch.bincount(batch.cpu()) if batch is not None and n else
              torch.tensor([n]))  # [G]
    cell = graph.get(keys.CELL)
    cells = (cell.detach().cpu().reshape(-1, 3, 3) if cell is not None else
             torch.zeros(len(counts), 3, 3))  # [G, 3, 3]
    out, slices, start = [], [], 0
    for g, count in enumerate(counts.tolist()):
        sl = slice(start, start + count)
        h = hashlib.blake2b(digest_size=16)
        for t in (positions[sl], numbers[sl], cells[g]):
            h.update(t.contiguous().numpy().tobytes())
        out.append(h.hexdigest())
        slices.append(sl)
        start += count
    return out, slices


class FrozenBackbone(torch.nn.Module):
    """A backbone that does not train: features computed once per structure, then cached.

    Transparent in the state dict (the backbone's own keys, as if unwrapped), so a checkpoint
    saved with a frozen backbone loads into the same model built without it.  The cache is keyed
    by the content of each structure (positions, atomic numbers, cell): a moved structure is a
    new one.  Memory: ``irreps_out.dim`` numbers per atom of every structure seen.
    """

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.frozen = backbone.requires_grad_(False)
        for attr in _FORWARDED:
            if hasattr(backbone, attr):
                setattr(self, attr, getattr(backbone, attr))
        self.irreps_out = o3.Irreps(backbone.irreps_out)
        self.cache: dict[str, torch.Tensor] = {}
        self._register_state_dict_hook(_unwrap_keys)
        self._register_load_state_dict_pre_hook(_wrap_keys)

    def train(self, mode: bool = True):
        super().train(mode)
        self.frozen.eval()  # frozen: dropout and friends off, always
        return self

    def forward(self, graph: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names, slices = _structure_keys(graph)
        if all(k in self.cache for k in names):
            features = torch.cat([self.cache[k] for k in names])  # [N, dim]
        else:
            with torch.no_grad():
                features = self.frozen(dict(graph))[keys.NODE_FEATURES]  # [N, dim]
            for k, sl in zip(names, slices):
                self.cache[k] = features[sl]
        out = dict(graph)
        out[keys.NODE_FEATURES] = features
        if keys.BATCH not in out:
            out[keys.BATCH] = torch.zeros(features.shape[0], dtype=torch.long,
                                          device=features.device)
        return out


def _unwrap_keys(module, state_dict, prefix, local_metadata):
    """state_dict hook: ``prefix + "frozen." + k`` -> ``prefix + k``."""
    inner = prefix + "frozen."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)
    return state_dict


def _wrap_keys(state_dict, prefix, *args):
    """load pre-hook: ``prefix + k`` -> ``prefix + "frozen." + k``."""
    inner = prefix + "frozen."
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix):]] = state_dict.pop(key)
