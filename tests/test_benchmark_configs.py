"""The committed benchmark configs (``benchmarks/shared/*.yaml``) and the published-model
protocols (``benchmarks/published.PROTOCOLS``) are valid configs that build their models.

Nothing here trains or reads the shared data: it checks what ``run_shared.py`` would hand the
trainer, so that a protocol quoted in ``benchmarks/README.md`` cannot rot unnoticed.
"""
from pathlib import Path

import pytest
from e3nn import o3

from tsym.compiler import load_plans
from tsym.runtime.model import build_model
from tsym.runtime.training.config import load_config
from tsym.runtime.training.setup import plans_for

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
from benchmarks import published, run_shared  # noqa: E402

SHARED = sorted(p.stem for p in (BENCH / "shared").glob("*.yaml"))


def _model(cfg):
    return build_model(plans_for(cfg), backbone=cfg.model.backbone, cutoff=cfg.model.cutoff,
                       backbone_kwargs=cfg.model.backbone_kwargs,
                       head_kwargs=cfg.model.head_kwargs)


def test_every_committed_config_is_a_known_set():
    assert SHARED and set(SHARED) == set(run_shared.SETS)
    assert set(published.PROTOCOLS) == set(published.PUBLISHED)  # a protocol per published row


@pytest.mark.parametrize("name", SHARED)
def test_committed_config_is_valid(name, tmp_path):
    cfg = load_config(run_shared.config_for(name, tmp_path, seed=3))
    assert cfg.training.seed == 3
    assert all(load_plans(h.spec) for h in cfg.heads)
    assert Path(cfg.data.train).parent == tmp_path.resolve() / "converted"


@pytest.mark.parametrize("name", sorted(published.PROTOCOLS))
def test_published_protocol_builds_its_model(name, tmp_path):
    tag, scale, overrides = published.PROTOCOLS[name]
    base = run_shared.config_for(name, tmp_path, scale, seed=1)
    cfg = load_config(run_shared.apply_overrides(base, list(overrides)))
    assert cfg.training.epochs == round(
        load_config(run_shared.config_for(name, tmp_path)).training.epochs * scale)
    for item in overrides:  # every override holds in the checked config (load_config
        # refuses a key it does not know, so a misspelt override fails above)
        path, _, value = item.partition("=")
        node = cfg.to_dict()
        for key in path.split("."):
            node = node[key]
        assert str(node) == value
    model = _model(cfg)
    irreps = cfg.model.backbone_kwargs.get("irreps")
    if irreps:  # the backbone's node features are the protocol's
        assert o3.Irreps(model.backbone.irreps) == o3.Irreps(irreps)
    args = published.protocol_args(name, 1, tmp_path)
    assert args[args.index("--tag") + 1] == tag and args.count("--set") == len(overrides)


def test_gamma_protocol_reaches_l4_and_refines():
    """The protocol behind the water_gamma row: node features up to l = 4 and refinement."""
    _, _, overrides = published.PROTOCOLS["water_gamma_tensoap"]
    values = dict(item.split("=", 1) for item in overrides)
    assert o3.Irreps(values["model.backbone_kwargs.irreps"]).lmax == 4
    assert int(values["refine.iterations"]) > 0
