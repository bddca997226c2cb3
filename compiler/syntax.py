"""From ``.tsym`` text to a frozen syntax tree with source locations.

:func:`parse_syntax` runs the cached lark parser of ``tsym.grammar`` and walks the parse tree into
the small frozen dataclasses below.  Nothing is validated here beyond the grammar: unknown clause
keywords, bad values and bad letters come out as ordinary nodes, and
:mod:`tsym.compiler.parse` checks them.  Grammar errors are turned into
:class:`~tsym.compiler.errors.SpecSyntaxError` with a human message (``expected a clause
(indices, ...) or '}'`` rather than lark's terminal names), chosen from the parser's state: the
tokens already on its stack say which clause was being read and what may follow.

>>> doc = parse_syntax("tensor dipole {\\n  indices i\\n}", "d.tsym")
>>> block = doc.blocks[0]
>>> block.name.text, block.clauses[0].keyword.text, block.clauses[0].words[0].loc.column
('dipole', 'indices', 11)
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass

from lark import Token, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken

from tsym.grammar import get_parser

from .errors import SourceLocation, SpecSyntaxError, shown_char
from .spec import CLAUSES, LEVELS, PARITIES, POOLS, POSITIVITY, SUM_RULES

__all__ = ["Word", "TermNode", "RelTermNode", "ClauseNode", "BlockNode", "DocumentNode", "Source", "parse_syntax"]


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


class Source:
    """The text of one file, to build :class:`SourceLocation` objects carrying their line."""

    def __init__(self, text: str, filename: str):
        self.text = text
        self.file = filename
        self.lines = text.split("\n")

    def loc(self, line: int, column: int) -> SourceLocation:
        """Location at 1-based ``line`` and ``column``."""
        line_text = self.lines[line - 1] if 1 <= line <= len(self.lines) else ""
        return SourceLocation(self.file, line, column, line_text.rstrip("\r"))

    def at(self, token: Token, offset: int = 0) -> SourceLocation:
        """Location of ``token`` (plus ``offset`` characters on the same line)."""
        return self.loc(token.line, token.column + offset)

    def end(self) -> SourceLocation:
        """Location just past the last character of the text."""
        return self.loc(len(self.lines), len(self.lines[-1]) + 1)


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


# --- grammar errors in words -------------------------------------------------------------------
_KEYWORDS = {clause.upper(): clause for clause in CLAUSES}  # token type -> clause keyword
_VALUES = {"parity": PARITIES, "level": LEVELS, "pool": POOLS, "sum_rule": SUM_RULES, "positive": POSITIVITY}
_CLAUSE_LIST = ", ".join(CLAUSES)
_TERM_HINT = (
    "a term is the index letters in some order, optionally with a leading '-', e.g. 'symmetry ij = -ji'"
)
_END_HINT = "end a clause with a newline or ';'"
_Described = tuple[SourceLocation | None, str, str | None]


def describe_syntax_error(err: UnexpectedInput, source: Source) -> tuple[SourceLocation, str, str | None]:
    """Turn a lark error into ``(location, message, hint)`` in the words of the .tsym language."""
    if not isinstance(err, UnexpectedToken):
        loc = source.loc(err.line, err.column)
        pos = getattr(err, "pos_in_stream", None)
        char = source.text[pos] if pos is not None and 0 <= pos < len(source.text) else ""
        if char == '"':
            return loc, "unterminated string", "close the string with '\"' on the same line"
        if char.isspace():
            hint = "use plain spaces, tabs and newlines"
            return loc, f"unexpected whitespace character {ascii(char)}", hint
        return loc, f"unexpected character {ascii(char)}", None
    token = err.token
    at_end = token.type == "$END"
    loc = source.end() if at_end else source.at(token)
    found = "the end of the file" if at_end else _describe(token)
    parser = getattr(err, "interactive_parser", None)
    stack = list(parser.parser_state.value_stack) if parser is not None else []
    override, message, hint = _expectation(stack, token, found, source)
    if not at_end and token.type != "STRING" and not str(token).isascii():
        hint = "names and index letters are ASCII letters only (a-z, A-Z): write e.g. 'indices ijk'"
    return override or loc, message, hint


def _describe(token: Token) -> str:
    if token.type == "_NL":
        return "the end of the line"
    if token.type == "STRING":
        return f"the string {token}"
    return "'" + "".join(shown_char(ch) for ch in str(token)) + "'"


def _is(item: object, *types: str) -> bool:
    return isinstance(item, Token) and item.type in types


def _expectation(stack: list, token: Token, found: str, source: Source) -> _Described:
    opened = [i for i, item in enumerate(stack) if _is(item, "TENSOR")]
    if opened and any(_is(item, "_RBRACE") for item in stack[opened[-1] :]):
        opened = []  # the block is complete, only not yet reduced: we are at the top level
    if not opened:
        return _top_level(token, found)
    head = stack[opened[-1] :][:3]
    if len(head) == 1:
        return None, f"expected a tensor name after 'tensor', found {found}", (
            "a name is an identifier (letters, digits and '_', not starting with a digit), "
            "e.g. 'tensor dipole {'"
        )
    name = head[1]
    if len(head) == 2:
        if _is(token, "NAME", "SIGN", "OTHER", "NUMBER"):
            hint = "a tensor name is a single identifier (letters, digits and '_'), e.g. 'tensor my_name {'"
        else:
            hint = f"open the block with '{{': 'tensor {name} {{'"
        return None, f"expected '{{' after 'tensor {name}', found {found}", hint
    if token.type == "$END":
        return source.at(head[2]), f"unclosed '{{' of tensor '{name}': the file ends before its '}}'", (
            "add '}' after the last clause of the block"
        )
    tail: list = []
    for item in reversed(stack[opened[-1] + 3 :]):
        if not _in_clause(item):
            break
        tail.append(item)
    tail.reverse()
    if not tail:
        return _clause_start(token, found, name)
    keyword = _KEYWORDS.get(getattr(tail[0], "type", ""))
    if keyword is None:  # inside an unknown clause: only '{' can be wrong here
        if tail[0] == "tensor":
            return source.at(tail[0]), f"tensor '{name}' is not closed before the next 'tensor'", (
                "close the block with '}' before starting the next one"
            )
        return None, f"unexpected {found} inside the block of tensor '{name}'", (
            "'{' only opens a block: 'tensor NAME {'"
        )
    if keyword == "symmetry":
        return _in_symmetry(tail, token, found)
    if keyword == "relation":
        return _in_relation(tail, token, found)
    if len(tail) == 1:
        return _value_expected(keyword, token, found)
    return None, f"expected the end of the '{keyword}' clause, found {found}", _extra_value_hint(keyword)


def _in_clause(item: object) -> bool:
    """Whether a parser-stack item belongs to the clause being read (not to a finished one)."""
    if isinstance(item, Token):
        return item.type not in ("_NL", "_SEMI", "_LBRACE", "_RBRACE", "TENSOR")
    # `term` and lark's helper rules for repeats inside a clause (`__symmetry_star_0`, ...);
    # `_sep`, `_clause` and the block's own helper (`__tensor_...`) end the search.
    data = str(item.data) if isinstance(item, Tree) else ""
    if data in ("term", "lin_comb", "rel_term"):
        return True
    return data.startswith("__") and not data.startswith("__tensor")


def _top_level(token: Token, found: str) -> _Described:
    message = f"expected a tensor block 'tensor NAME {{ ... }}', found {found}"
    if token.type == "_RBRACE":
        hint = "remove it, or check the braces of the block above"
        return None, "found '}' outside of any tensor block", hint
    if token.type in _KEYWORDS or token.type == "_EQ":
        hint = "clauses belong inside a block 'tensor NAME { ... }'; is there an extra '}' above?"
        return None, message, hint
    if token.type == "NAME" and difflib.get_close_matches(str(token).lower(), ["tensor"], n=1, cutoff=0.6):
        return None, message, "did you mean 'tensor'?"
    return None, message, "a spec file holds blocks like 'tensor dipole { indices i }'"


def _clause_start(token: Token, found: str, name: str) -> _Described:
    message = f"expected a clause ({_CLAUSE_LIST}) or '}}', found {found}"
    if token.type == "TENSOR":
        return None, f"tensor '{name}' is not closed before the next 'tensor'", (
            "close the block with '}' before starting the next one"
        )
    if token.type in ("_EQ", "SIGN"):
        return None, message, "a clause ends at the end of its line: keep a symmetry equation on one line"
    return None, message, "a clause starts with its keyword, e.g. 'indices ijk'"


def _in_symmetry(tail: list, token: Token, found: str) -> _Described:
    last = tail[-1]
    if _is(last, "SYMMETRY", "_EQ"):
        after = "'symmetry'" if _is(last, "SYMMETRY") else "'='"
        hint = _TERM_HINT
        if token.type == "_NL" and _is(last, "_EQ"):
            hint += "; keep the whole equation on one line"
        return None, f"expected a symmetry term after {after}, found {found}", hint
    if _is(last, "SIGN"):
        return None, f"expected index letters after '{last}', found {found}", _TERM_HINT
    message = f"expected '=' or the end of the 'symmetry' clause, found {found}"
    if token.type in ("NAME", "SIGN"):
        return None, message, "separate the terms with '=', e.g. 'symmetry ij = ji'"
    return None, message, _END_HINT


_RELATION_HINT = (
    "a relation is a sum of index orders with optional coefficients, equal to 0 or to another such "
    "sum, e.g. 'relation ijk + jki + kij = 0' or 'relation 2 ijk = jik - 1/2 kji'"
)


def _in_relation(tail: list, token: Token, found: str) -> _Described:
    last = tail[-1]
    has_eq = any(_is(item, "_EQ") for item in tail)
    if _is(last, "RELATION", "_EQ", "SIGN"):
        after = {"RELATION": "'relation'", "_EQ": "'='", "SIGN": f"'{last}'"}[last.type]
        hint = _RELATION_HINT
        if token.type == "_NL":
            hint += "; keep the whole relation on one line"
        return None, f"expected a relation term after {after}, found {found}", hint
    if _is(last, "NUMBER"):
        return None, f"expected index letters or '+', '-', '=' after the coefficient '{last}', found {found}", (
            _RELATION_HINT
        )
    if has_eq:
        message = f"expected '+', '-' or the end of the 'relation' clause, found {found}"
        if token.type == "_EQ":
            return None, message, "a relation has one '=': move every term to one side, e.g. 'ijk - jik = 0'"
        return None, message, _END_HINT if token.type not in ("NAME", "NUMBER") else (
            "join the terms with '+' or '-', e.g. 'relation ijk + jki + kij = 0'"
        )
    message = f"expected '+', '-' or '=' in the 'relation' clause, found {found}"
    if token.type in ("_NL", "_SEMI", "_RBRACE"):
        return None, message, "a relation needs '=': write e.g. 'relation ijk + jki + kij = 0'"
    return None, message, "join the terms with '+' or '-', e.g. 'relation ijk + jki + kij = 0'"


def _value_expected(keyword: str, token: Token, found: str) -> _Described:
    if keyword == "indices":
        return None, f"expected the index letters after 'indices', found {found}", (
            "write one letter per index, e.g. 'indices ijk'"
        )
    if keyword == "traceless":
        return None, f"expected an index pair after 'traceless', found {found}", "e.g. 'traceless ij'"
    if keyword == "units":
        if token.type in ("NAME", "OTHER", "SIGN", "NUMBER"):
            hint = f"write the units in double quotes: units {json.dumps(str(token))}"
        else:
            hint = 'write the units in double quotes, e.g. units "GPa"'
        return None, f"expected a double-quoted string after 'units', found {found}", hint
    allowed = _VALUES[keyword]
    return None, f"expected a value after '{keyword}', found {found}", f"write one of: {', '.join(allowed)}"


def _extra_value_hint(keyword: str) -> str:
    if keyword == "indices":
        return f"write the index letters as one word, e.g. 'indices ijk'; {_END_HINT}"
    if keyword == "traceless":
        return f"write each pair as two letters, e.g. 'traceless ij'; {_END_HINT}"
    if keyword == "units":
        return f"'units' takes one double-quoted string; {_END_HINT}"
    return f"'{keyword}' takes a single value, one of: {', '.join(_VALUES[keyword])}; {_END_HINT}"
