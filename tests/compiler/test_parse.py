"""The .tsym front end on valid input: grammar, locations, the spec library and the round trip."""
from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsym.compiler.errors import SourceLocation
from tsym.compiler.parse import parse_file, parse_text
from tsym.compiler.spec import (
    LEVELS,
    PARITIES,
    POOLS,
    SymmetryEquation,
    SymmetryTerm,
    TensorSpec,
    TracePair,
)
from tsym.grammar import get_parser, load_grammar

from ..conftest import SPECS_DIR


CONTRACT_EXAMPLE = """\
# comments run to the end of the line; a file may hold several tensor blocks
tensor elastic_stiffness {
    indices   ijkl                      # required; one letter per index
    symmetry  ijkl = jikl = ijlk = klij # every term is a permutation
    parity    polar                     # optional
    traceless ij                        # optional, repeatable
    level     structure                 # optional
    pool      mean                      # optional
    units     "GPa"                     # optional free text
}
"""


def test_grammar_is_package_data_and_parser_is_cached():
    assert "tensor" in load_grammar() and "start:" in load_grammar()
    assert get_parser() is get_parser()


def test_contract_example_fields():
    (spec,) = parse_text(CONTRACT_EXAMPLE, "ex.tsym")
    assert spec.name == "elastic_stiffness"
    assert spec.indices == "ijkl" and spec.order == 4
    assert spec.symmetries == (
        SymmetryEquation(
            (SymmetryTerm(1, "ijkl"), SymmetryTerm(1, "jikl"), SymmetryTerm(1, "ijlk"), SymmetryTerm(1, "klij"))
        ),
    )
    assert spec.parity == "polar"
    assert spec.traceless == (TracePair("ij"),)
    assert (spec.level, spec.pool, spec.units) == ("structure", "mean", "GPa")


def test_contract_example_locations():
    (spec,) = parse_text(CONTRACT_EXAMPLE, "ex.tsym")
    # `tensor` starts line 2; `symmetry` is at column 5 of line 4 and its terms at 15, 22, 29, 36.
    assert (spec.loc.file, spec.loc.line, spec.loc.column) == ("ex.tsym", 2, 1)
    assert spec.loc.line_text == "tensor elastic_stiffness {"
    equation = spec.symmetries[0]
    assert (equation.loc.line, equation.loc.column) == (4, 5)
    assert [(t.loc.line, t.loc.column) for t in equation.terms] == [(4, 15), (4, 22), (4, 29), (4, 36)]
    assert (spec.traceless[0].loc.line, spec.traceless[0].loc.column) == (6, 15)


def test_defaults_and_minimal_block():
    (spec,) = parse_text("tensor dipole { indices i }")
    assert spec == TensorSpec("dipole", "i")
    assert (spec.parity, spec.level, spec.pool, spec.units, spec.symmetries, spec.traceless) == (
        "polar", "structure", "sum", None, (), ()
    )


def test_separators_comments_and_line_endings_do_not_matter():
    one_line = 'tensor e { indices ijkl; symmetry ijkl = jikl = ijlk = klij; traceless ij; pool mean; units "GPa" }'
    (a,) = parse_text(CONTRACT_EXAMPLE.replace("elastic_stiffness", "e"))
    (b,) = parse_text(one_line)
    (c,) = parse_text(CONTRACT_EXAMPLE.replace("elastic_stiffness", "e").replace("\n", "\r\n"))
    (d,) = parse_text("\n\n  # lead\n" + CONTRACT_EXAMPLE.replace("elastic_stiffness", "e").replace("    ", "\t"))
    assert a == b == c == d
    assert hash(a) == hash(d)
    assert a.loc.line != d.loc.line  # locations differ, yet the specs are equal


def test_clause_order_signs_and_repeats():
    text = """
    tensor t {
        units "x"; pool mean
        symmetry ijk = -jik
        level atom
        symmetry ijk = +ikj = kji
        traceless jk
        traceless ij kj
        indices ijk
        parity axial
    }
    """
    (spec,) = parse_text(text)
    assert spec.indices == "ijk"
    assert [eq.to_source() for eq in spec.symmetries] == ["ijk = -jik", "ijk = ikj = kji"]
    assert spec.symmetries[0].terms[1].sign == -1 and spec.symmetries[1].terms[1].sign == 1
    assert [p.letters for p in spec.traceless] == ["jk", "ij", "kj"]
    # pool is allowed (and kept) with level atom, where it has no effect
    assert (spec.parity, spec.level, spec.pool, spec.units) == ("axial", "atom", "mean", "x")


def test_several_blocks_in_source_order():
    specs = parse_text("tensor a { indices i }\ntensor b { indices ij }\n\ntensor c { indices ijk }")
    assert [s.name for s in specs] == ["a", "b", "c"]
    assert [s.order for s in specs] == [1, 2, 3]
    assert [s.loc.line for s in specs] == [1, 2, 4]


def test_keywords_as_names_and_letters():
    # the contextual lexer reads keywords as names where a name is expected
    specs = parse_text("tensor tensor { indices units; symmetry units = nuits }\ntensor indices { indices ij }")
    assert [s.name for s in specs] == ["tensor", "indices"]
    assert specs[0].indices == "units"
    assert specs[0].symmetries[0].terms[1].letters == "nuits"


@pytest.mark.parametrize("order", [1, 5, 8, 12, 52])
def test_high_orders_parse(order):
    letters = (string.ascii_lowercase + string.ascii_uppercase)[:order]
    swapped = letters[1::-1] + letters[2:] if order > 1 else letters
    (spec,) = parse_text(f"tensor big {{ indices {letters}\n symmetry {letters} = {swapped} }}")
    assert spec.order == order and spec.indices == letters
    assert spec.symmetries[0].terms[1].letters == swapped


def test_parse_text_caches_results():
    text = "tensor cached { indices ij; symmetry ij = ji }"
    assert parse_text(text) is parse_text(text)


def test_units_escapes():
    (spec,) = parse_text(r'tensor u { indices i; units "a \"b\" \\ c\tdé" }')
    assert spec.units == 'a "b" \\ c\tdé'
    assert parse_text(spec.to_source())[0].units == spec.units


def test_to_source_canonical_layout():
    spec = TensorSpec(
        "pz", "ijk", (SymmetryEquation.of("ijk", "-ikj"),), traceless=(TracePair("jk"),), pool="mean", units="C/m^2"
    )
    assert spec.to_source() == (
        "tensor pz {\n"
        "    indices   ijk\n"
        "    symmetry  ijk = -ikj\n"
        "    parity    polar\n"
        "    traceless jk\n"
        "    level     structure\n"
        "    pool      mean\n"
        '    units     "C/m^2"\n'
        "}"
    )


def test_locations_excluded_from_equality():
    here = SourceLocation("a.tsym", 3, 7, "x")
    assert SymmetryTerm(1, "ij", here) == SymmetryTerm(1, "ij")
    assert TracePair("ij", here) == TracePair("ij")
    assert TensorSpec("t", "ij", loc=here) == TensorSpec("t", "ij")
    assert hash(TensorSpec("t", "ij", loc=here)) == hash(TensorSpec("t", "ij"))
    assert TensorSpec("t", "ij", pool="mean") != TensorSpec("t", "ij")


# --- the spec library -------------------------------------------------------------------------
# name: (indices, symmetry equations, parity, traceless pairs, level, pool, units), from the brief.
LIBRARY = {
    "dipole": ("i", [], "polar", [], "structure", "sum", "e*Angstrom"),
    "polarizability": ("ij", ["ij = ji"], "polar", [], "structure", "sum", "Bohr^3"),
    "hyperpolarizability": ("ijk", ["ijk = jik = ikj"], "polar", [], "structure", "sum", "e^3*Bohr^3/Hartree^2"),
    "quadrupole": ("ij", ["ij = ji"], "polar", ["ij"], "structure", "sum", "e*Angstrom^2"),
    "nmr_shielding": ("ij", [], "polar", [], "atom", "sum", "ppm"),
    "born_charges": ("ij", [], "polar", [], "atom", "sum", "e"),
    "dielectric": ("ij", ["ij = ji"], "polar", [], "structure", "mean", "dimensionless"),
    "piezoelectric": ("ijk", ["ijk = ikj"], "polar", [], "structure", "mean", "C/m^2"),
    "elastic": ("ijkl", ["ijkl = jikl = ijlk = klij"], "polar", [], "structure", "mean", "GPa"),
    "second_hyperpolarizability": (
        "ijkl", ["ijkl = jikl = ikjl = ijlk"], "polar", [], "structure", "sum", "e^4*Bohr^4/Hartree^3"
    ),
    "gyration": ("ij", ["ij = ji"], "axial", [], "structure", "mean", "dimensionless"),
    "mixed_rank3": ("ijk", ["ijk = jik"], "polar", [], "structure", "sum", None),
    "born_charges_sum_rule": ("ij", [], "polar", [], "atom", "sum", "e"),
    "polarizability_positive": ("ij", ["ij = ji"], "polar", [], "structure", "sum", "Bohr^3"),
    "dielectric_positive": ("ij", ["ij = ji"], "polar", [], "structure", "mean", "dimensionless"),
    "elastic_positive": ("ijkl", ["ijkl = jikl = ijlk = klij"], "polar", [], "structure", "mean", "GPa"),
}
# name: (relations, sum_rule, positive) where a library spec states more than the defaults.
PHYSICS = {
    "mixed_rank3": (["ijk + jki + kij = 0"], None, None),
    "born_charges_sum_rule": ([], "zero", None),
    "polarizability_positive": ([], None, "definite"),
    "dielectric_positive": ([], None, "definite"),
    "elastic_positive": ([], None, "definite"),
}


def test_library_has_exactly_the_listed_files():
    assert sorted(p.stem for p in SPECS_DIR.glob("*.tsym")) == sorted(LIBRARY)


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_spec(name):
    path = SPECS_DIR / f"{name}.tsym"
    assert path.read_text(encoding="utf-8").startswith("#")  # a comment header with the physics
    (spec,) = parse_file(path)
    indices, symmetries, parity, traceless, level, pool, units = LIBRARY[name]
    assert spec.name == name
    assert spec.indices == indices
    assert [eq.to_source() for eq in spec.symmetries] == symmetries
    assert spec.parity == parity
    assert [p.letters for p in spec.traceless] == traceless
    assert (spec.level, spec.pool, spec.units) == (level, pool, units)
    relations, sum_rule, positive = PHYSICS.get(name, ([], None, None))
    assert [r.to_source() for r in spec.relations] == relations
    assert (spec.sum_rule and spec.sum_rule.value, spec.positive and spec.positive.value) == (sum_rule, positive)
    assert spec.loc.file == str(path)
    assert parse_text(spec.to_source())[0] == spec


def test_parse_file_accepts_a_bom(tmp_path):
    path = tmp_path / "bom.tsym"
    path.write_bytes(b"\xef\xbb\xbftensor bom { indices ij }\n")
    (spec,) = parse_file(path)
    assert spec == TensorSpec("bom", "ij")


# --- round trip on generated specs --------------------------------------------------------------
_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True) | st.sampled_from(
    ["tensor", "indices", "symmetry", "parity", "traceless", "level", "pool", "units", "polar"]
)


@st.composite
def tensor_specs(draw, name=_NAMES):
    order = draw(st.integers(1, 8))
    indices = "".join(draw(st.permutations(string.ascii_letters))[:order])

    def term() -> SymmetryTerm:
        return SymmetryTerm(draw(st.sampled_from([1, -1])), "".join(draw(st.permutations(indices))))

    equations = tuple(
        SymmetryEquation(tuple(term() for _ in range(draw(st.integers(2, 4)))))
        for _ in range(draw(st.integers(0, 3)))
    )
    pairs = ()
    if order >= 2:
        pairs = tuple(
            TracePair("".join(draw(st.permutations(indices))[:2])) for _ in range(draw(st.integers(0, 2)))
        )
    return TensorSpec(
        name=draw(name),
        indices=indices,
        symmetries=equations,
        parity=draw(st.sampled_from(PARITIES)),
        traceless=pairs,
        level=draw(st.sampled_from(LEVELS)),
        pool=draw(st.sampled_from(POOLS)),
        units=draw(st.none() | st.text(max_size=12)),
    )


@settings(max_examples=200, deadline=None)
@given(tensor_specs())
def test_round_trip_generated(spec):
    source = spec.to_source()
    (back,) = parse_text(source)
    assert back == spec
    assert back.to_source() == source  # canonical: printing is idempotent


@settings(max_examples=50, deadline=None)
@given(st.lists(tensor_specs(), min_size=1, max_size=4, unique_by=lambda s: s.name))
def test_round_trip_several_blocks(specs):
    text = "\n\n".join(s.to_source() for s in specs)
    assert parse_text(text, "many.tsym") == tuple(specs)
