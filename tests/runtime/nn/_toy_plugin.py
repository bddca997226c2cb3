"""Writes a tiny installed-looking package that provides backbone ``toy`` through the
``tsym.backbones`` entry-point group: a module plus a ``*.dist-info`` folder (METADATA,
entry_points.txt), found by ``importlib.metadata`` on ``sys.path``/``PYTHONPATH``."""
from __future__ import annotations

import textwrap
from pathlib import Path

MODULE = "tsym_toy_backbone"

SOURCE = textwrap.dedent('''
    """A toy backbone plugin: per atom 4x0e+4x1o from one message pass."""
    import torch

    import tsym
    from tsym.runtime import keys
    from tsym.runtime.graph import edge_vectors


    class Toy(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.width = width
            self.embed = torch.nn.Embedding(119, width)
            self.radial = torch.nn.Linear(4, 2 * width)
            self.register_buffer("centres", torch.linspace(0.8, 3.5, 4))

        def forward(self, graph):
            src, dst = graph[keys.EDGE_INDEX]
            vec = edge_vectors(graph)  # [E, 3]
            length = vec.norm(dim=1, keepdim=True)  # [E, 1]
            w = self.radial(torch.exp(-(length - self.centres) ** 2))  # [E, 2w]
            s = self.embed(graph[keys.ATOMIC_NUMBERS])  # [N, w]
            a, b = (w * s[src].repeat(1, 2)).split(self.width, dim=1)  # [E, w] each
            msg = torch.cat([a, (b[:, :, None] * vec[:, None, :] / length[:, :, None])
                             .flatten(1)], dim=1)  # [E, 4w]
            out = torch.zeros(s.shape[0], msg.shape[1], dtype=msg.dtype)
            return out.index_add(0, dst, msg) + torch.cat([s, torch.zeros_like(msg[:1, self.width:]
                                                            ).expand(s.shape[0], -1)], dim=1)


    def make(cutoff, width=4):
        return tsym.backbone_from_module(Toy(width), f"{width}x0e+{width}x1o", cutoff=cutoff,
                                         name="toy")
''')


def write_plugin(root: Path, broken: bool = False) -> Path:
    """The folder to put on the path; ``broken``: a second entry point whose module is missing."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{MODULE}.py").write_text(SOURCE)
    info = root / f"{MODULE}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {MODULE}\nVersion: 0.1\n")
    lines = ["[tsym.backbones]", f"toy = {MODULE}:make"]
    if broken:
        lines.append("broken = tsym_no_such_module:make")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root
