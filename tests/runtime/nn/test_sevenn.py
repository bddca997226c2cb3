"""SevenNet's shipped checkpoints (``sevenn``) as a backbone: ``backbone="sevenn"``.

Skipped, with the install command as the reason, where the ``sevenn`` extra is absent.  The
checkpoints are SO(3)-only (``is_parity=False``): the raw features rotate with e3nn's ``D(R)``
and mix under a reflection (an error of order one); behind ``RestoreParity`` (which
``build_model`` adds) they transform with ``D_from_matrix`` of proper and improper matrices, in
float64 at 1e-10 of the largest feature.  float32 is bounded by its own rounding (float32 minus
float64 features, before and after the move, plus 1e-10: the triangle inequality).  Tiny
structures keep the file fast on one core (7net-0: ~20 ms a pass; l3i5: ~3x).
"""
from __future__ import annotations

import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

import tsym
from tsym.runtime import keys
from tsym.runtime.errors import CheckpointError, ExportError, ModelConfigError, UnknownElementError
from tsym.runtime.graph import collate
from tsym.runtime.nn.extras import INSTALL
from tsym.runtime.nn.parity import RestoreParity
from tsym.runtime.nn.pretrained import checkpoint_identity
from tsym.runtime.equivariance import rotate_atoms

from ...conftest import SPECS_DIR, TOLERANCES, rotation_and_d

pytest.importorskip("sevenn", reason=f"the 'sevenn' extra is not installed: {INSTALL['sevenn']}")
from tsym.runtime.nn.sevenn import SevenNetBackbone  # noqa: E402

CUTOFF = 5.0
SO3 = {"7net-0": "128x0e+64x1e+32x2e", "7net-l3i5": "128x0e+64x1e+32x2e+32x3e"}
HEADS = dict(hidden_mul=2, mlp_hidden=4)
_NETS: dict = {}


def _net(name: str) -> SevenNetBackbone:
    if name not in _NETS:
        _NETS[name] = SevenNetBackbone(CUTOFF, name).double()
    return _NETS[name]


def _molecule() -> Atoms:
    mol = molecule("CH3OH")
    mol.rattle(0.05, seed=1)
    return mol


def _cell() -> Atoms:
    crystal = bulk("ZnO", "wurtzite", a=3.25, c=5.2)  # 4 atoms, many images within 5 A
    crystal.rattle(0.15, seed=2)  # generic, far from 6mm: chiral, so 0o is not zero
    return crystal


STRUCTURES = {"molecule": _molecule, "cell": _cell}


def _features(net, atoms, dtype):
    with torch.no_grad():
        return net(collate([atoms], CUTOFF, dtype))[keys.NODE_FEATURES].double()  # [N, dim]


def _errors(net, atoms, dtype, irreps):
    """Relative errors under a rotation and a reflection; the bound (see the module doc)."""
    out, bound = {}, TOLERANCES[torch.float64]
    for proper in (True, False):
        rotation, d = rotation_and_d(irreps, proper, torch.float64)
        moved = rotate_atoms(atoms, rotation)
        before, after = _features(net, atoms, dtype), _features(net, moved, dtype)
        expected = before @ d.T  # [N, dim]
        scale = float(expected.abs().max())
        out["rotation" if proper else "reflection"] = float((after - expected).abs().max()) / scale
        if dtype != torch.float64:
            net64 = net.double()
            rounding = sum(float((_features(net64, a, torch.float64) - f).abs().max()) / scale
                           for a, f in ((atoms, before), (moved, after)))
            net.to(dtype)
            bound = max(bound, TOLERANCES[torch.float64] + rounding)
    return out, bound


@pytest.mark.parametrize("where", list(STRUCTURES))
@pytest.mark.parametrize("name", list(SO3))
def test_shipped_checkpoints_are_so3_only_and_restored_to_o3(name, where):
    net = _net(name)
    assert str(net.irreps_out) == SO3[name] and net.parity is False
    atoms = STRUCTURES[where]()
    raw, bound = _errors(net, atoms, torch.float64, net.irreps_out)
    assert raw["rotation"] < bound and raw["reflection"] > 0.1  # inversion mixes all channels
    wrapped = RestoreParity(net)
    assert str(wrapped.irreps_out) == SO3[name] + "+" + SO3[name].replace("e", "o")
    restored, bound = _errors(wrapped, atoms, torch.float64, wrapped.irreps_out)
    assert max(restored.values()) < bound, restored
    f = _features(wrapped, atoms, torch.float64)  # [N, 2 dim]: no block is trivially zero
    for (_, ir), sl in zip(wrapped.irreps_out, wrapped.irreps_out.slices()):
        assert f[:, sl].abs().max() > 1e-6 * f.abs().max(), f"{ir} is zero"


def test_float32_restored_within_its_rounding():
    wrapped = RestoreParity(SevenNetBackbone(CUTOFF, "7net-0").float())
    errors, bound = _errors(wrapped, _cell(), torch.float32, wrapped.irreps_out)
    assert max(errors.values()) < bound < 1e-4, (errors, bound)


def test_float64_matches_float32_to_its_rounding():
    net = SevenNetBackbone(CUTOFF, "7net-0")
    f32 = _features(net.float(), _molecule(), torch.float32)
    f64 = _features(net.double(), _molecule(), torch.float64)
    assert float((f32 - f64).abs().max()) < 1e-4 * float(f64.abs().max())


def test_heads_polar_and_axial_pass_check_equivariance():
    model = tsym.build_model([SPECS_DIR / f"{n}.tsym" for n in ("dipole", "polarizability",
                                                                "gyration")],
                             backbone="sevenn", backbone_kwargs={"checkpoint": "7net-0"},
                             dtype=torch.float64, head_kwargs=HEADS)
    assert isinstance(model.backbone, RestoreParity)
    report = tsym.check_equivariance(model, [_molecule(), _cell()])
    assert report.ok, str(report)
    assert max(h.relative for h in report.heads) < TOLERANCES[torch.float64]


def test_uncovered_element_refused_by_name():
    net = _net("7net-0")
    polonium = Atoms("PoH", positions=[[0, 0, 0], [0, 0, 1.7]])
    with pytest.raises(UnknownElementError, match=r"^backbone 'sevenn': element Po \(Z=84\) is "
                                                  r"not among its elements \(H, He, Li"):
        net(collate([polonium], CUTOFF, torch.float64))


def test_unknown_checkpoint_and_wrong_cutoff_are_config_errors(tmp_path):
    with pytest.raises(ModelConfigError, match=r"^backbone 'sevenn': checkpoint '7net-nope' is "
                                               r"neither a file nor a checkpoint the sevenn "
                                               r"package ships \(.*7net-0"):
        SevenNetBackbone(CUTOFF, "7net-nope")
    with pytest.raises(ModelConfigError, match=r"^backbone 'sevenn': checkpoint '7net-0' was "
                                               r"trained with a cutoff of 5.0 Angstrom; build "
                                               r"the model with cutoff=5.0 \(given 4.0\)"):
        SevenNetBackbone(4.0, "7net-0")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelConfigError, match=r"^backbone 'sevenn': '.*junk.pth' \(.*\) is not "
                                               r"a SevenNet checkpoint"):
        SevenNetBackbone(CUTOFF, str(junk))


def test_checkpoint_by_path_is_the_same_network():
    from sevenn.util import pretrained_name_to_path

    path = pretrained_name_to_path("7net-0")
    by_path = SevenNetBackbone(CUTOFF, path).double()
    assert by_path.checkpoint_sha256 == _net("7net-0").checkpoint_sha256 == checkpoint_identity(
        path)
    assert torch.equal(_features(by_path, _molecule(), torch.float64),
                       _features(_net("7net-0"), _molecule(), torch.float64))


def _small_model():
    return tsym.build_model([SPECS_DIR / "dipole.tsym"], backbone="sevenn",
                            backbone_kwargs={"checkpoint": "7net-0"}, head_kwargs=HEADS)


def test_save_reload_keeps_name_and_sha256(tmp_path):
    model = _small_model()
    model.save(tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=False)
    assert saved["backbone"] == "sevenn" and saved["backbone_kwargs"] == {"checkpoint": "7net-0"}
    digest = saved["state_dict"]["backbone.backbone.checkpoint_digest"]
    assert bytes(digest.tolist()).hex() == _net("7net-0").checkpoint_sha256
    again = tsym.build_model(checkpoint=tmp_path / "m.pt")
    assert (again.predict(_molecule())["dipole"] == model.predict(_molecule())["dipole"]).all()
    saved["state_dict"]["backbone.backbone.checkpoint_digest"] = torch.zeros(32, dtype=torch.uint8)
    torch.save(saved, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"backbone 'sevenn': the model was trained on a "
                                              r"checkpoint with sha256 0000000000000000"
                                              r"\.\.\., but '7net-0' is now"):
        tsym.build_model(checkpoint=tmp_path / "other.pt")


def test_export_and_reload(tmp_path):
    """tsym export traces for_export() (SevenNet's modules scripted): the file runs on other
    sizes than the example it was traced on, and agrees with the model (export's own check
    holds it to 1e-5 relative in float32; here two structures it was not traced with)."""
    from tsym.runtime.inference.export import export_model, graph_inputs, load_exported

    model = _small_model()
    module, meta = load_exported(export_model(model, tmp_path / "m.pt"))
    structures = [_molecule(), _cell(), molecule("H2O")]
    got = module(*graph_inputs(structures, meta["cutoff"], torch.float32))["dipole"]
    want = model.predict(structures)["dipole"]
    assert abs(got.detach().numpy() - want).max() <= 1e-5 * abs(want).max()
    polonium = Atoms("PoH", positions=[[0, 0, 0], [0, 0, 1.7]])  # Z=84 <= max_z, not covered
    with pytest.raises(Exception, match="one_hot|Class values"):
        module(*graph_inputs([polonium], meta["cutoff"], torch.float32))


def test_a_trace_of_the_eager_modules_is_refused():
    net = RestoreParity(SevenNetBackbone(CUTOFF, "7net-0"))
    graph = collate([_molecule()], CUTOFF, torch.float32)
    with pytest.raises(ExportError, match=r"^backbone 'sevenn': a trace of its eager modules "
                                          r"records the number of atoms"):
        torch.jit.trace(lambda p: net({**graph, keys.POSITIONS: p})[keys.NODE_FEATURES],
                        graph[keys.POSITIONS], check_trace=False)
