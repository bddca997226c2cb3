"""From ``.tsym`` text to a frozen syntax tree with source locations.

:func:`parse_syntax` runs the cached lark parser of ``tsym.grammar`` and walks the parse tree into
the small frozen dataclasses below.  Nothing is validated here beyond the grammar: unknown clause
keywords, bad values and bad letters come out as ordinary nodes, and
:mod:`tsym.compiler.parse` checks them.  Grammar errors become
:class:`~tsym.compiler.errors.SpecSyntaxError` with the message that
:mod:`tsym.compiler.diagnose` chooses.

>>> doc = parse_syntax("tensor dipole {\\n  indices i\\n}", "d.tsym")
>>> block = doc.blocks[0]
>>> block.name.text, block.clauses[0].keyword.text, block.clauses[0].words[0].loc.column
('dipole', 'indices', 11)
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from lark import Token, Tree
from lark.exceptions import UnexpectedInput

from tsym.grammar import get_parser

from .diagnose import describe_syntax_error
from .errors import Source, SourceLocation, SpecSyntaxError

__all__ = ["Word", "TermNode", "RelTermNode", "ClauseNode", "BlockNode", "DocumentNode", "parse_syntax"]


@dataclass(frozen=True)
class Word:
    """A token's text (decoded for strings) and where it starts."""

    text: str
    loc: SourceLocation


@dataclass(frozen=True)
class TermNode:
    """A symmetry term: ``-jikl`` -> sign -1, letters ``jikl``; ``loc`` is where the term starts."""

    sign: int
    letters: Word
    loc: SourceLocation


@dataclass(frozen=True)
class RelTermNode:
    """A relation term: ``- 1/2 jki`` -> sign -1, number ``1/2``, letters ``jki``; either of number
    and letters may be missing (``0`` has no letters); ``loc`` is where the term starts."""

    sign: int
    number: Word | None
    letters: Word | None
    loc: SourceLocation


@dataclass(frozen=True)
class ClauseNode:
    """One clause.  ``kind`` is the grammar rule (a clause keyword, or ``"unknown"``)."""

    kind: str
    keyword: Word
    words: tuple[Word, ...] = ()  # indices / parity / level / pool / sum_rule / positive: one
    terms: tuple[TermNode, ...] = ()  # symmetry
    text: Word | None = None  # units, decoded
    sides: tuple[tuple[RelTermNode, ...], ...] = ()  # relation: left and right of '='


@dataclass(frozen=True)
class BlockNode:
    """``tensor NAME { clauses }``; ``keyword`` is the ``tensor`` token."""

    keyword: Word
    name: Word
    clauses: tuple[ClauseNode, ...]


@dataclass(frozen=True)
class DocumentNode:
    """All blocks of one file, in source order."""

    file: str
    blocks: tuple[BlockNode, ...]


def parse_syntax(text: str, filename: str = "<string>") -> DocumentNode:
    """Parse ``text`` into a :class:`DocumentNode`.

    Raises
    ------
    SpecSyntaxError
        If the text does not follow the grammar, located at the offending character.
    """
    source = Source(text, filename)
    try:
        tree = get_parser().parse(text)
    except UnexpectedInput as err:
        loc, message, hint = describe_syntax_error(err, source)
        raise SpecSyntaxError(loc, message, hint) from None
    blocks = tuple(_block(child, source) for child in tree.children)
    return DocumentNode(filename, blocks)


def _word(token: Token, source: Source) -> Word:
    return Word(str(token), source.at(token))


def _block(tree: Tree, source: Source) -> BlockNode:
    keyword, name, *clauses = tree.children
    return BlockNode(_word(keyword, source), _word(name, source), tuple(_clause(c, source) for c in clauses))


def _clause(tree: Tree, source: Source) -> ClauseNode:
    kind = str(tree.data)
    first, *rest = tree.children
    keyword = _word(first, source)
    if kind == "symmetry":
        return ClauseNode(kind, keyword, terms=tuple(_term(t, source) for t in rest))
    if kind == "units":
        return ClauseNode(kind, keyword, text=_string(rest[0], source))
    if kind == "relation":
        return ClauseNode(kind, keyword, sides=tuple(_lin_comb(side, source) for side in rest))
    if kind == "unknown":
        return ClauseNode(kind, keyword)
    return ClauseNode(kind, keyword, words=tuple(_word(t, source) for t in rest))


def _term(tree: Tree, source: Source) -> TermNode:
    *sign, letters = tree.children
    value = -1 if sign and sign[0] == "-" else 1
    start = sign[0] if sign else letters
    return TermNode(value, _word(letters, source), source.at(start))


def _lin_comb(tree: Tree, source: Source) -> tuple[RelTermNode, ...]:
    """``[SIGN] rel_term (SIGN rel_term)*`` -> terms with their signs."""
    out, sign, start = [], 1, None
    for child in tree.children:
        if isinstance(child, Token) and child.type == "SIGN":
            sign, start = (-1 if child == "-" else 1), child
            continue
        number = next((t for t in child.children if t.type == "NUMBER"), None)
        letters = next((t for t in child.children if t.type == "NAME"), None)
        first = start or child.children[0]
        out.append(RelTermNode(
            sign,
            _word(number, source) if number is not None else None,
            _word(letters, source) if letters is not None else None,
            source.at(first),
        ))
        sign, start = 1, None
    return tuple(out)


def _string(token: Token, source: Source) -> Word:
    """Decode a STRING token (JSON escapes)."""
    try:
        value = json.loads(str(token), strict=False)
    except json.JSONDecodeError as err:
        raise SpecSyntaxError(
            source.at(token, err.pos),
            f"invalid escape in the string {token}",
            r'inside a string write \" for a quote and \\ for a backslash (JSON escapes)',
        ) from None
    bad = next((k for k, ch in enumerate(value) if 0xD800 <= ord(ch) <= 0xDFFF), None)
    if bad is not None:
        raise SpecSyntaxError(
            source.at(token),
            f"the string {token} holds a lone surrogate (U+{ord(value[bad]):04X}), which is not text",
            "write the character itself, or a JSON surrogate pair such as \\ud83d\\ude00",
        )
    return Word(value, source.at(token))
