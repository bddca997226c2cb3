"""One spec loader (``tsym.compiler.library``): library names, paths and spec text."""
from __future__ import annotations

import pytest

import tsym
from tsym.compiler import load_plans
from tsym.compiler.errors import SpecFileError
from tsym.compiler.library import library_names, resolve_spec, spec_kind
from tsym.runtime.training.config import TrainConfig

from ..conftest import SPECS_DIR


def test_the_library_is_the_package_data():
    assert library_names() == sorted(p.stem for p in SPECS_DIR.glob("*.tsym"))
    assert {"polarizability", "elastic", "dielectric", "nmr_shielding"} <= set(library_names())


@pytest.mark.parametrize("spec, kind", [
    ("tensor d { indices i }", "text"),
    ("tensor d {\n indices i\n}", "text"),
    ("polarizability", "library"),
    (str(SPECS_DIR / "dipole.tsym"), "file"),
    ("no/such/file.tsym", "file"),
])
def test_one_decision_text_file_or_library(spec, kind):
    assert spec_kind(spec) == kind


def test_library_name_path_and_text_give_the_same_plan():
    by_name = load_plans("elastic")[0]
    by_path = load_plans(SPECS_DIR / "elastic.tsym")[0]
    by_text = load_plans((SPECS_DIR / "elastic.tsym").read_text())[0]
    assert by_name.spec_hash == by_path.spec_hash == by_text.spec_hash
    assert tsym.load_plans("elastic")[0].irreps == "2x0e+2x2e+1x4e"


def test_a_file_beside_a_config_wins_over_the_library(tmp_path):
    (tmp_path / "dipole").write_text("tensor mine { indices i }\n")
    assert spec_kind("dipole", tmp_path) == "file"
    assert [p.name for p in load_plans("dipole", base_dir=tmp_path)] == ["mine"]
    assert resolve_spec("dipole", tmp_path) == str(tmp_path / "dipole")
    assert resolve_spec("dielectric", tmp_path) == "dielectric"


def test_a_missing_library_path_names_the_library_spec():
    with pytest.raises(SpecFileError, match=r"^specs/polarizability\.tsym: cannot read the spec "
                                            r"file: .*\nhint: 'polarizability' is a spec of the "
                                            r"library"):
        load_plans("specs/polarizability.tsym")
    with pytest.raises(SpecFileError, match=r"hint: did you mean the library spec 'dielectric'"):
        load_plans("dielectrik")


def test_a_training_config_takes_a_library_name(tmp_path):
    cfg = TrainConfig.from_dict({"heads": {"dielectric": {"spec": "dielectric"}},
                                 "data": {"train": "d.extxyz"}}, base_dir=tmp_path)
    assert cfg.heads[0].spec == "dielectric"


def test_every_entry_point_takes_a_library_name(capsys):
    from tsym.cli import main
    from tsym.runtime.training.setup import plans_for

    assert main(["inspect", "elastic"]) == 0
    assert "2x0e+2x2e+1x4e" in capsys.readouterr().out
    model = tsym.build_model("polarizability", backbone_kwargs=dict(
        num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=1, embedding="onehot"),
        head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
    assert [p.name for p in model.plans] == ["polarizability"]
    cfg = TrainConfig.from_dict({"heads": {"eps": {"spec": "dielectric"}},
                                 "data": {"train": "d.extxyz"}})
    (plan,) = plans_for(cfg)
    assert plan.name == "eps" and plan.irreps == load_plans("dielectric")[0].irreps
