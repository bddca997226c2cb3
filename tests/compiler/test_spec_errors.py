"""Every mistake in a .tsym spec is a located TsymError; messages are pinned from the input by hand.

Positions are 1-based; block bodies below are indented by 4 spaces, so a clause keyword is at
column 5 and its first value at column 5 + len(keyword) + 1.
"""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsym.compiler.errors import (
    ClauseValueError,
    DuplicateClauseError,
    DuplicateTensorError,
    IndexLetterError,
    MissingClauseError,
    SpecError,
    SpecFileError,
    SpecSyntaxError,
    SymmetryTermError,
    TracelessPairError,
    TsymError,
    UnknownClauseError,
)
from tsym.compiler.parse import parse_file, parse_text
from tsym.compiler.spec import SymmetryEquation, SymmetryTerm, TensorSpec, TracePair


def block(*clauses: str, name: str = "t") -> str:
    """``tensor NAME {`` on line 1, one clause per line from line 2 (indented by 4), then ``}``."""
    return "\n".join([f"tensor {name} {{", *(f"    {c}" for c in clauses), "}"]) + "\n"


def parse(text: str):
    return parse_text(text, "spec.tsym")


# --- clause-level mistakes ---------------------------------------------------------------------
def test_unknown_clause_full_message():
    with pytest.raises(UnknownClauseError) as info:
        parse(block("indices ij", "symetry ij = ji"))
    assert str(info.value) == (
        "spec.tsym:3:5: unknown clause 'symetry'\n"
        "        symetry ij = ji\n"
        "        ^\n"
        "hint: did you mean 'symmetry'? (the clauses are: indices, symmetry, parity, traceless, "
        "relation, sum_rule, positive, level, pool, units)"
    )


def test_unknown_clause_without_close_match_lists_the_clauses():
    with pytest.raises(UnknownClauseError, match=r"^spec\.tsym:3:5: unknown clause 'order'") as info:
        parse(block("indices ijk", "order 3"))
    assert "hint: the clauses are: indices, symmetry, parity, traceless, relation, sum_rule, positive, " \
        "level, pool, units" in str(info.value)


@pytest.mark.parametrize(
    "clause, column, expected",
    [
        ("parity polr", 12, r"unknown parity 'polr'; allowed: polar, axial"),
        ("level atoms", 11, r"unknown level 'atoms'; allowed: structure, atom"),
        ("pool avg", 10, r"unknown pool 'avg'; allowed: sum, mean"),
    ],
)
def test_bad_values_list_the_allowed_ones(clause, column, expected):
    with pytest.raises(ClauseValueError, match=rf"^spec\.tsym:3:{column}: {expected}"):
        parse(block("indices ij", clause))


def test_bad_value_suggests_the_closest():
    with pytest.raises(ClauseValueError, match=r"(?s)^spec\.tsym:3:12: .*hint: did you mean 'polar'\?"):
        parse(block("indices ij", "parity polr"))


def test_duplicate_clause_points_at_the_second():
    with pytest.raises(
        DuplicateClauseError, match=r"^spec\.tsym:4:5: duplicate 'parity' clause \(first given at line 3\)"
    ):
        parse(block("indices ij", "parity polar", "parity axial"))


def test_duplicate_indices():
    with pytest.raises(DuplicateClauseError, match=r"^spec\.tsym:3:5: duplicate 'indices' clause"):
        parse(block("indices ij", "indices ij"))


def test_missing_indices_points_at_the_block():
    with pytest.raises(MissingClauseError, match=r"^spec\.tsym:1:1: tensor 't' has no 'indices' clause") as info:
        parse(block("symmetry ij = ji"))
    assert "hint: add a line like 'indices ij'" in str(info.value)


def test_duplicate_tensor_points_at_the_second_name():
    text = block("indices i", name="a") + block("indices ij", name="a")  # second `tensor a {` on line 4
    with pytest.raises(
        DuplicateTensorError, match=r"^spec\.tsym:4:8: tensor 'a' is defined twice \(first at line 1\)"
    ):
        parse(text)


# --- letters, terms and pairs --------------------------------------------------------------------
def test_repeated_index_letter_points_at_the_repeat():
    # "    indices " is 12 characters: i j k i at columns 13..16
    with pytest.raises(IndexLetterError, match=r"^spec\.tsym:2:16: index letter 'i' appears twice in 'ijki'"):
        parse(block("indices ijki"))


def test_index_letter_must_be_a_letter():
    with pytest.raises(IndexLetterError, match=r"^spec\.tsym:2:15: '_' is not an index letter"):
        parse(block("indices ij_"))


# "    symmetry " is 13 characters: the first term at column 14, the second (after " = ") at 20
@pytest.mark.parametrize(
    "term, detail",
    [
        ("ijl", r"'l' is not one of the indices"),
        ("ij", r"it has 2 letters, the tensor has 3 indices"),
        ("ijkl", r"'l' is not one of the indices"),
        ("iji", r"'i' appears twice"),
        ("-ikk", r"'k' appears twice"),
    ],
)
def test_symmetry_term_not_a_permutation(term, detail):
    pattern = (
        rf"^spec\.tsym:3:20: symmetry term '{re.escape(term)}' is not a permutation of the indices "
        rf"'ijk': {detail}"
    )
    with pytest.raises(SymmetryTermError, match=pattern) as info:
        parse(block("indices ijk", f"symmetry ijk = {term}"))
    assert "hint: write a term that uses each of the letters i, j, k exactly once" in str(info.value)


def test_symmetry_first_term_is_checked_too():
    with pytest.raises(SymmetryTermError, match=r"^spec\.tsym:3:14: symmetry term 'ikl' is not a permutation"):
        parse(block("indices ijk", "symmetry ikl = ijk"))


def test_symmetry_equation_with_a_single_term():
    with pytest.raises(
        SymmetryTermError, match=r"^spec\.tsym:3:5: a symmetry equation needs at least two terms, found only 'ijk'"
    ):
        parse(block("indices ijk", "symmetry ijk"))


# "    traceless " is 14 characters: the pair at column 15
@pytest.mark.parametrize(
    "pair, message",
    [
        ("il", r"traceless pair 'il' names 'l', which is not one of the indices 'ijk'"),
        ("ii", r"traceless pair 'ii' names the letter 'i' twice"),
        ("ijk", r"traceless takes a pair of two index letters, got 'ijk'"),
        ("i", r"traceless takes a pair of two index letters, got 'i'"),
    ],
)
def test_traceless_pair(pair, message):
    with pytest.raises(TracelessPairError, match=rf"^spec\.tsym:3:15: {message}"):
        parse(block("indices ijk", f"traceless {pair}"))


def test_second_pair_on_a_traceless_line():
    # "    traceless ij " is 17 characters: the second pair at column 18
    with pytest.raises(TracelessPairError, match=r"^spec\.tsym:3:18: traceless pair 'kk'"):
        parse(block("indices ijk", "traceless ij kk"))


# --- syntax errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, pattern",
    [
        ("tensor a {\n    indices ij\n", r"1:10: unclosed '\{' of tensor 'a': the file ends before its '\}'"),
        ("tensor {\n    indices ij\n}\n", r"1:8: expected a tensor name after 'tensor', found '\{'"),
        ("tensor 3d {\n", r"1:8: expected a tensor name after 'tensor', found '3d'"),
        ("tensor a\n    indices ij\n}\n", r"1:9: expected '\{' after 'tensor a', found the end of the line"),
        ("tensor a-b {\n", r"1:9: expected '\{' after 'tensor a', found '-'"),
        ("tensor a {\n    indices ij$\n}\n", r"2:15: expected the end of the 'indices' clause, found '\$'"),
        (
            "tensor a {\n    = ji\n}\n",
            r"2:5: expected a clause \(indices, symmetry, parity, traceless, relation, sum_rule, "
            r"positive, level, pool, units\) or '\}', "
            r"found '='",
        ),
        ("tensr a {\n", r"1:1: expected a tensor block 'tensor NAME \{ \.\.\. \}', found 'tensr'"),
        ("tensor a { indices i }\n}\n", r"2:1: found '\}' outside of any tensor block"),
        ("tensor a { indices i }x\n", r"1:23: expected a tensor block 'tensor NAME \{ \.\.\. \}', found 'x'"),
        ("tensor a {\n    indices ij\ntensor b {\n", r"3:1: tensor 'a' is not closed before the next 'tensor'"),
        ("tensor a {\n    parity\n}\n", r"2:11: expected a value after 'parity', found the end of the line"),
        ("tensor a {\n    parity polar axial\n}\n", r"2:18: expected the end of the 'parity' clause, found 'axial'"),
        ("tensor a {\n    indices\n}\n", r"2:12: expected the index letters after 'indices'"),
        ("tensor a {\n    units GPa\n}\n", r"2:11: expected a double-quoted string after 'units', found 'GPa'"),
        ('tensor a {\n    units "GPa\n}\n', r"2:11: unterminated string"),
        ('tensor a {\n    units "G\\qPa"\n}\n', r"2:13: invalid escape in the string"),
        ("tensor a {\n    symmetry ij ji\n}\n", r"2:17: expected '=' or the end of the 'symmetry' clause, found 'ji'"),
        ("tensor a {\n    symmetry ij =\n}\n", r"2:18: expected a symmetry term after '=', found the end of the line"),
        ("tensor a {\n    symmetry ij = -\n}\n", r"2:20: expected index letters after '-'"),
        ("tensor a {\n    indices\u00a0ij\n}\n", r"2:12: unexpected whitespace character '\\xa0'"),
    ],
)
def test_syntax_errors(text, pattern):
    with pytest.raises(SpecSyntaxError, match=rf"^spec\.tsym:{pattern}"):
        parse(text)


def test_syntax_error_message_has_caret_and_hint():
    with pytest.raises(SpecSyntaxError) as info:
        parse("tensor a {\n    units GPa\n}\n")
    assert str(info.value).splitlines()[1:] == [
        "        units GPa",
        "              ^",
        'hint: write the units in double quotes: units "GPa"',
    ]


def test_misspelled_tensor_keyword_hint():
    with pytest.raises(SpecSyntaxError, match=r"(?s)^spec\.tsym:1:1: .*hint: did you mean 'tensor'\?"):
        parse("tensr a {\n")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "   ;;\n"])
def test_no_tensor_block(text):
    with pytest.raises(SpecSyntaxError, match=r"^spec\.tsym:1:1: no tensor block in this file") as info:
        parse(text)
    assert "tensor dipole {\n        indices i\n    }" in str(info.value)


# --- files ---------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nope.tsym"
    with pytest.raises(SpecFileError, match=rf"^{re.escape(str(path))}: cannot read the spec file"):
        parse_file(path)


def test_directory_is_not_a_spec_file(tmp_path):
    with pytest.raises(SpecFileError, match=rf"^{re.escape(str(tmp_path))}: cannot read the spec file"):
        parse_file(tmp_path)


def test_invalid_utf8_is_located(tmp_path):
    path = tmp_path / "bad.tsym"
    path.write_bytes(b"tensor a {\n    indices \xff\n}\n")  # the bad byte: line 2, column 13
    with pytest.raises(SpecSyntaxError, match=rf"^{re.escape(str(path))}:2:13: the file is not valid UTF-8"):
        parse_file(path)


def test_file_errors_carry_the_path(tmp_path):
    path = tmp_path / "e.tsym"
    path.write_text(block("indices ij", "pool avg"), encoding="utf-8")
    with pytest.raises(ClauseValueError, match=rf"^{re.escape(str(path))}:3:10: unknown pool 'avg'"):
        parse_file(path)


# --- specs built in Python are checked too --------------------------------------------------------
@pytest.mark.parametrize(
    "build, error",
    [
        (lambda: TensorSpec("t", "iji"), IndexLetterError),
        (lambda: TensorSpec("t", "i1"), IndexLetterError),
        (lambda: TensorSpec("t", ""), IndexLetterError),
        (lambda: TensorSpec("2t", "ij"), SpecSyntaxError),
        (lambda: TensorSpec("t", "ij", parity="odd"), ClauseValueError),
        (lambda: TensorSpec("t", "ij", level="bond"), ClauseValueError),
        (lambda: TensorSpec("t", "ij", pool="max"), ClauseValueError),
        (lambda: TensorSpec("t", "ij", (SymmetryEquation.of("ij", "jk"),)), SymmetryTermError),
        (lambda: SymmetryEquation((SymmetryTerm(1, "ij"),)), SymmetryTermError),
        (lambda: SymmetryTerm(2, "ij"), SymmetryTermError),
        (lambda: TracePair("iij"), TracelessPairError),
        (lambda: TensorSpec("t", "ij", traceless=(TracePair("ik"),)), TracelessPairError),
    ],
)
def test_python_built_specs_are_validated(build, error):
    with pytest.raises(error, match=r"^<python>:0:0: "):
        build()


# --- no traceback for any input ------------------------------------------------------------------
_PREFIX = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): \S")


def assert_specs_or_located_error(text: str, filename: str = "<string>") -> None:
    """``parse_text`` returns specs or raises a SpecError whose message starts with FILE:LINE:COL:."""
    try:
        specs = parse_text(text, filename)
    except TsymError as err:
        assert isinstance(err, SpecError)
        match = _PREFIX.match(str(err))
        assert match is not None, str(err)
        assert match["file"] == filename
        assert 1 <= int(match["line"]) <= text.count("\n") + 1
        assert int(match["col"]) >= 1
    else:
        assert specs and all(isinstance(s, TensorSpec) for s in specs)
        assert parse_text("\n".join(s.to_source() for s in specs)) == specs


_VOCAB = [
    "tensor", "t", "u", "{", "}", "indices", "ij", "ijk", "symmetry", "symetry", "=", "-", "+",
    "parity", "polar", "axial", "traceless", "level", "structure", "atom", "pool", "mean", "sum",
    "units", '"GPa"', '"', '"\\q"', ";", "\n", "# c\n", "3", "$", "\\", "é", "\t", "\u00a0", "\r\n",
    "\ufeff", "ji", "-ji", "kji", "ii", "_", "\x00", "\u2028", "{}",
]
_VALID = 'tensor e {\n    indices ijkl\n    symmetry ijkl = jikl = klij\n    traceless ij\n    units "GPa"\n}\n'


_SOUP = st.lists(st.tuples(st.sampled_from(_VOCAB), st.sampled_from(["", " ", " ", "\n"])), max_size=30).map(
    lambda tokens: "".join(tok + sep for tok, sep in tokens)
)
# bare soup, soup inside a block, soup after a valid first clause
_FRAMES = ["{}", "tensor t {{\n{}\n}}", "tensor t {{\n    indices ijk\n    {}\n}}\n"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_FRAMES), _SOUP)
def test_token_soup_gives_specs_or_located_error(frame, soup):
    assert_specs_or_located_error(frame.format(soup))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_spec_gives_specs_or_located_error(data):
    text = _VALID * data.draw(st.integers(1, 2))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        edit = data.draw(st.sampled_from(["delete", "insert", "replace", "dup_line"]))
        char = data.draw(st.sampled_from(_VOCAB) | st.characters())
        if edit == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 5)) :]
        elif edit == "insert":
            text = text[:pos] + char + text[pos:]
        elif edit == "replace":
            text = text[:pos] + char + text[pos + 1 :]
        else:
            lines = text.split("\n")
            k = pos % len(lines)
            text = "\n".join(lines[: k + 1] + lines[k:])
    assert_specs_or_located_error(text, "my spec.tsym")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_gives_specs_or_located_error(text):
    assert_specs_or_located_error(text)
