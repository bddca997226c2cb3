"""Read ``.tsym`` text into validated :class:`~tsym.compiler.spec.TensorSpec` objects.

The two public functions never let a Python traceback through for bad input: every mistake is a
:class:`~tsym.compiler.errors.TsymError` whose message starts with ``FILE:LINE:COL:``, shows the
line with a caret and ends with a hint.

>>> (spec,) = parse_text('tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij; pool mean }')
>>> spec.order, spec.pool, len(spec.symmetries[0].terms)
(4, 'mean', 4)
>>> parse_text(spec.to_source()) == (spec,)
True
"""
from __future__ import annotations

import difflib
import os
from dataclasses import replace
from fractions import Fraction
from functools import lru_cache

from .errors import (
    ClauseValueError,
    RelationError,
    DuplicateClauseError,
    DuplicateTensorError,
    IndexLetterError,
    MissingClauseError,
    Source,
    SourceLocation,
    SpecFileError,
    SpecSyntaxError,
    UnknownClauseError,
)
from .spec import (
    CLAUSES,
    LEVELS,
    PARITIES,
    POOLS,
    POSITIVITY,
    REPEATABLE_CLAUSES,
    SUM_RULES,
    Constraint,
    Relation,
    RelationTerm,
    SymmetryEquation,
    SymmetryTerm,
    TensorSpec,
    TracePair,
)
from .syntax import BlockNode, ClauseNode, RelTermNode, Word, parse_syntax

__all__ = ["parse_text", "parse_file"]

_MINIMAL_BLOCK = "a spec file holds at least one block, e.g.\n    tensor dipole {\n        indices i\n    }"
_VALUES = {"parity": PARITIES, "level": LEVELS, "pool": POOLS}
_CONSTRAINTS = {"sum_rule": SUM_RULES, "positive": POSITIVITY}  # optional clauses, no default
_SPARE_LETTERS = "ijklmnpqrstuvwxyzabcdefgho"


def parse_text(text: str, filename: str = "<string>") -> tuple[TensorSpec, ...]:
    """Parse and validate the tensor blocks of a ``.tsym`` text.

    Parameters
    ----------
    text : str
        The spec source; it may hold several ``tensor`` blocks.
    filename : str
        Used in error messages and in the specs' source locations.

    Returns
    -------
    tuple of TensorSpec
        One per block, in source order.  Results are cached per ``(text, filename)``.

    Raises
    ------
    SpecError
        A subclass naming the mistake (``SpecSyntaxError``, ``UnknownClauseError``, ...), with a
        message that starts with ``FILE:LINE:COL:``.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_text expects str, not {type(text).__name__}")
    return _parse_cached(text, str(filename))


def parse_file(path: str | os.PathLike) -> tuple[TensorSpec, ...]:
    """Read a UTF-8 ``.tsym`` file (a leading BOM is allowed) and parse it with :func:`parse_text`.

    Raises
    ------
    SpecFileError
        The file cannot be read (missing, a directory, no permission).
    SpecSyntaxError
        The file is not valid UTF-8 (located at the first bad byte) or not valid .tsym.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise SpecFileError(f"{name}: cannot read the spec file: {reason}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start
        line = data.count(b"\n", 0, start) + 1
        line_start = data.rfind(b"\n", 0, start) + 1
        line_end = data.find(b"\n", start)
        raw_line = data[line_start : line_end if line_end >= 0 else len(data)]
        prefix = data[line_start:start].decode("utf-8", errors="replace")
        loc = SourceLocation(name, line, len(prefix) + 1, raw_line.decode("utf-8", errors="replace"))
        raise SpecSyntaxError(
            loc, f"the file is not valid UTF-8 (byte 0x{data[start]:02x})", "save the spec file as UTF-8"
        ) from None
    return parse_text(text, name)


@lru_cache(maxsize=256)
def _parse_cached(text: str, filename: str) -> tuple[TensorSpec, ...]:
    document = parse_syntax(text, filename)
    if not document.blocks:
        start = Source(text, filename).loc(1, 1)
        raise SpecSyntaxError(start, "no tensor block in this file", _MINIMAL_BLOCK)
    specs: list[TensorSpec] = []
    first_by_name: dict[str, BlockNode] = {}
    for block in document.blocks:
        first = first_by_name.setdefault(block.name.text, block)
        if first is not block:
            raise DuplicateTensorError(
                block.name.loc,
                f"tensor '{block.name.text}' is defined twice (first at line {first.name.loc.line})",
                "give each tensor block its own name, or merge the two blocks",
            )
        specs.append(_build(block))
    return tuple(specs)


def _build(block: BlockNode) -> TensorSpec:
    """Check one block's clauses and build its :class:`TensorSpec` (which checks the rest)."""
    clauses = _check_clauses(block)
    indices = _indices(clauses["indices"][0].words[0])
    values = {key: _value(clauses[key][0].words[0], key) for key in _VALUES if key in clauses}
    symmetries = tuple(
        SymmetryEquation(
            tuple(SymmetryTerm(term.sign, term.letters.text, term.loc) for term in clause.terms),
            clause.keyword.loc,
        )
        for clause in clauses.get("symmetry", ())
    )
    traceless = tuple(
        TracePair(word.text, word.loc) for clause in clauses.get("traceless", ()) for word in clause.words
    )
    units = clauses["units"][0].text.text if "units" in clauses else None
    relations = tuple(_relation(clause) for clause in clauses.get("relation", ()))
    constraints = {
        key: Constraint(_value(clauses[key][0].words[0], key), clauses[key][0].keyword.loc)
        for key in _CONSTRAINTS
        if key in clauses
    }
    return TensorSpec(
        name=block.name.text,
        indices=indices,
        symmetries=symmetries,
        traceless=traceless,
        units=units,
        relations=relations,
        loc=block.keyword.loc,
        **values,
        **constraints,
    )


def _relation(clause: ClauseNode) -> Relation:
    """``lhs = rhs`` -> one :class:`Relation` ``lhs - rhs = 0`` (coefficients exact)."""
    terms = []
    for side, sign in zip(clause.sides, (1, -1)):
        for node in side:
            coeff = sign * node.sign * _coefficient(node)
            if node.letters is None:
                if coeff != 0:
                    raise RelationError(
                        node.number.loc,
                        f"a relation is linear in the tensor: the constant {node.number.text} has no meaning",
                        "write index orders with coefficients, and 0 for an empty side, "
                        "e.g. 'relation ijk + jki + kij = 0'",
                    )
                continue
            terms.append(RelationTerm(coeff, node.letters.text, node.letters.loc))
    return Relation(tuple(terms), clause.keyword.loc)


def _coefficient(node: RelTermNode) -> Fraction:
    if node.number is None:
        return Fraction(1)
    text = node.number.text
    num, _, den = text.partition("/")
    if den and int(den) == 0:
        raise RelationError(node.number.loc, f"the coefficient {text} divides by zero", "e.g. 1/2")
    return Fraction(num) / (Fraction(den) if den else 1)


def _check_clauses(block: BlockNode) -> dict[str, list[ClauseNode]]:
    """Group the clauses by keyword; refuse unknown, repeated and missing ones."""
    grouped: dict[str, list[ClauseNode]] = {}
    for clause in block.clauses:
        keyword = clause.keyword
        if clause.kind == "unknown":
            hint = _unknown_hint(keyword.text)
            raise UnknownClauseError(keyword.loc, f"unknown clause '{keyword.text}'", hint)
        previous = grouped.setdefault(clause.kind, [])
        if previous and clause.kind not in REPEATABLE_CLAUSES:
            raise DuplicateClauseError(
                keyword.loc,
                f"duplicate '{clause.kind}' clause (first given at line {previous[0].keyword.loc.line})",
                f"give '{clause.kind}' once; only {' and '.join(REPEATABLE_CLAUSES)} may repeat",
            )
        previous.append(clause)
    if "indices" not in grouped:
        raise MissingClauseError(
            block.keyword.loc,
            f"tensor '{block.name.text}' has no 'indices' clause",
            "add a line like 'indices ij' inside the block (one letter per index)",
        )
    return grouped


def _unknown_hint(word: str) -> str:
    known = f"the clauses are: {', '.join(CLAUSES)}"
    if word == "tensor":
        return "a block cannot hold another block: close the block above with '}' first"
    close = difflib.get_close_matches(word.lower(), CLAUSES, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'? ({known})" if close else known


def _at(word: Word, offset: int) -> SourceLocation:
    return replace(word.loc, column=word.loc.column + offset)


def _indices(word: Word) -> str:
    """Check the letters of ``indices``: ASCII letters, each once."""
    letters = word.text
    for pos, letter in enumerate(letters):
        if not ("a" <= letter <= "z" or "A" <= letter <= "Z"):
            clean = "".join(ch for ch in letters if ch.isascii() and ch.isalpha()) or "ij"
            raise IndexLetterError(
                _at(word, pos),
                f"'{letter}' is not an index letter; indices are single ASCII letters a-z, A-Z",
                f"one letter per index, e.g. 'indices {clean}'",
            )
        if letter in letters[:pos]:
            raise IndexLetterError(
                _at(word, pos),
                f"index letter '{letter}' appears twice in '{letters}'",
                f"give each index its own letter, e.g. 'indices {_distinct(letters)}'",
            )
    return letters


def _distinct(letters: str) -> str:
    """``letters`` with repeats replaced by unused letters (for hints): ``iij`` -> ``ikj``."""
    out: list[str] = []
    for letter in letters:
        if letter in out:
            pool = _SPARE_LETTERS + _SPARE_LETTERS.upper()
            spare = (ch for ch in pool if ch not in out and ch not in letters)
            letter = next(spare, letter)
        out.append(letter)
    return "".join(out)


def _value(word: Word, keyword: str) -> str:
    allowed = _VALUES.get(keyword) or _CONSTRAINTS[keyword]
    if word.text in allowed:
        return word.text
    if keyword in _VALUES:
        choices = f"write one of: {allowed[0]} (the default), {', '.join(allowed[1:])}"
    else:
        choices = f"write {' or '.join(allowed)}, or leave out the '{keyword}' clause"
    close = difflib.get_close_matches(word.text.lower(), allowed, n=1, cutoff=0.5)
    raise ClauseValueError(
        word.loc,
        f"unknown {keyword} '{word.text}'; allowed: {', '.join(allowed)}",
        f"did you mean '{close[0]}'? ({choices})" if close else choices,
    )
