"""Diagnosis of grammar errors: a lark error -> ``(location, message, hint)`` in .tsym words.

:func:`describe_syntax_error` gives a human message (``expected a clause (indices, ...) or '}'``
rather than lark's terminal names), chosen from the parser's state: the tokens already on its
stack say which clause was being read and what may follow.  :func:`tsym.compiler.syntax.parse_syntax`
raises it as a :class:`~tsym.compiler.errors.SpecSyntaxError`.
"""
from __future__ import annotations

import difflib
import json

from lark import Token, Tree
from lark.exceptions import UnexpectedInput, UnexpectedToken

from .errors import Source, SourceLocation, shown_char
from .spec import CLAUSES, LEVELS, PARITIES, POOLS, POSITIVITY, SUM_RULES

__all__ = ["describe_syntax_error"]


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
