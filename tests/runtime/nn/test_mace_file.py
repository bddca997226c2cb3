"""A MACE model file as a foundation model: ``backbone="mace", backbone_kwargs={"checkpoint": P}``.

The test builds a small MACE, saves it whole with ``torch.save`` (what MACE-MP / MACE-OFF
``.model`` files are) and loads it as a foundation model: no download.  Skipped, with the install
command, where the ``mace`` extra is absent.  MACE is O(3)-equivariant itself: no parity wrapper;
features and heads are checked under rotations and reflections (float64, 1e-10 of the largest
value, conftest ``TOLERANCES``), the file saved from a model built in float64 (a model built in
float32 keeps e3nn's float32 constants: ~1e-9 equivariance errors after a cast to float64).
"""
from __future__ import annotations

import pytest
import torch
from ase.build import molecule

import tsym
from tsym.runtime import keys
from tsym.runtime.errors import CheckpointError, ModelConfigError, UnknownElementError
from tsym.runtime.graph import collate
from tsym.runtime.nn.extras import INSTALL
from tsym.runtime.nn.finetune import backbone_blocks
from tsym.runtime.nn.pretrained import checkpoint_identity
from tsym.runtime.equivariance import rotate_atoms

from ...conftest import default_dtype, molecule_and_cell, rotation_and_d, SPECS_DIR, TOLERANCES

pytest.importorskip("mace", reason=f"the 'mace' extra is not installed: {INSTALL['mace']}")
from tsym.runtime.nn.mace import MACEBackbone, mace_irreps  # noqa: E402

CUTOFF = 4.0
KWARGS = dict(elements=["H", "C", "O", "Zn"], hidden_irreps="4x0e+4x1o+4x2e", max_ell=2,
              num_interactions=2, correlation=2, radial_MLP=[8], MLP_irreps="4x0e",
              avg_num_neighbors=6.0)
HEADS = dict(hidden_mul=2, mlp_hidden=4)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A MACE saved whole, as MACE's training writes its ``.model`` files; and the original."""
    torch.manual_seed(0)
    with default_dtype(torch.float64):  # e3nn's and MACE's constants at full precision
        built = MACEBackbone(CUTOFF, **KWARGS)
    path = tmp_path_factory.mktemp("mace") / "small.model"
    torch.save(built.mace, path)
    return path, built


def _features(net, structures):
    with torch.no_grad():
        return net(collate(structures, CUTOFF, torch.float64))[keys.NODE_FEATURES]  # [N, dim]


def test_file_loads_as_the_same_network(model_file):
    path, built = model_file
    net = MACEBackbone(CUTOFF, checkpoint=str(path)).double()
    assert net.elements == (1, 6, 8, 30) and net.irreps_out == mace_irreps(built.mace)
    assert str(net.irreps_out) == "4x0e+4x1o+4x2e+4x0e"  # every layer, as MACE concatenates
    assert net.checkpoint_sha256 == checkpoint_identity(path)
    assert [len(ps) for ps in backbone_blocks(net)] == [  # finetune: N counts these blocks
        len(list(i.parameters())) + len(list(p.parameters()))
        for i, p in zip(built.mace.interactions, built.mace.products)]
    assert torch.equal(_features(net, molecule_and_cell()), _features(built, molecule_and_cell()))


@pytest.mark.parametrize("proper", [True, False], ids=["R", "-R"])
def test_file_features_transform_with_e3nn_d(model_file, proper):
    net = MACEBackbone(CUTOFF, checkpoint=str(model_file[0])).double()
    rotation, d = rotation_and_d(net.irreps_out, proper, torch.float64)
    before = _features(net, molecule_and_cell())
    after = _features(net, [rotate_atoms(a, rotation) for a in molecule_and_cell()])
    expected = before @ d.T  # [N, dim]
    assert (after - expected).abs().max() <= TOLERANCES[torch.float64] * expected.abs().max()


def test_heads_on_the_file_model_save_reload_and_digest(model_file, tmp_path):
    model = tsym.build_model([SPECS_DIR / f"{n}.tsym" for n in ("dipole", "gyration")],
                             backbone="mace", cutoff=CUTOFF, dtype=torch.float64,
                             backbone_kwargs={"checkpoint": str(model_file[0])}, head_kwargs=HEADS)
    report = tsym.check_equivariance(model, molecule_and_cell())
    assert report.ok and max(h.relative for h in report.heads) < TOLERANCES[torch.float64]
    model.save(tmp_path / "m.pt")
    again = tsym.build_model(checkpoint=tmp_path / "m.pt")
    assert (again.predict(molecule_and_cell())["dipole"] == model.predict(molecule_and_cell())["dipole"]).all()
    saved = torch.load(tmp_path / "m.pt", weights_only=False)
    saved["state_dict"]["backbone.checkpoint_digest"] = torch.zeros(32, dtype=torch.uint8)
    torch.save(saved, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"^backbone 'mace': the model was trained on a "
                                              r"checkpoint with sha256 0000000000000000"):
        tsym.build_model(checkpoint=tmp_path / "other.pt")


def test_uncovered_element_refused_by_name(model_file):
    net = MACEBackbone(CUTOFF, checkpoint=str(model_file[0]))
    with pytest.raises(UnknownElementError, match=r"^backbone 'mace': element N \(Z=7\) is not "
                                                  r"among its elements \(H, C, O, Zn\)"):
        net(collate([molecule("NH3")], CUTOFF, torch.float32))


def test_file_errors(model_file, tmp_path):
    path = str(model_file[0])
    with pytest.raises(ModelConfigError, match=r"^backbone 'mace': checkpoint .* has r_max 4.0 "
                                               r"Angstrom; build the model with cutoff=4.0 "
                                               r"\(given 5.0\)"):
        MACEBackbone(5.0, checkpoint=path)
    with pytest.raises(ModelConfigError, match=r"^backbone 'mace': checkpoint .* fixes the "
                                               r"network and its elements; drop max_ell, "
                                               r"elements"):
        MACEBackbone(CUTOFF, checkpoint=path, elements=["H"], max_ell=3)
    with pytest.raises(ModelConfigError, match=r"^backbone 'mace': checkpoint '.*nope.model' is "
                                               r"not a file"):
        MACEBackbone(CUTOFF, checkpoint=str(tmp_path / "nope.model"))
    torch.save({"not": "a model"}, tmp_path / "dict.model")
    with pytest.raises(ModelConfigError, match=r"^backbone 'mace': '.*dict.model' holds a dict, "
                                               r"not a MACE model"):
        MACEBackbone(CUTOFF, checkpoint=str(tmp_path / "dict.model"))
