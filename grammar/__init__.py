"""The .tsym grammar, shipped as package data and compiled once.

>>> tree = get_parser().parse("tensor dipole { indices i }")
>>> tree.data
Token('RULE', 'start')
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from lark import Lark

__all__ = ["GRAMMAR_FILE", "load_grammar", "get_parser"]

GRAMMAR_FILE = "tsym.lark"


@lru_cache(maxsize=1)
def load_grammar() -> str:
    """Return the text of ``tsym.lark``.

    Returns
    -------
    str
        The lark grammar of the .tsym language.
    """
    return resources.files(__name__).joinpath(GRAMMAR_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def get_parser() -> Lark:
    """Return the LALR parser of the .tsym language (built on the first call, then cached).

    Returns
    -------
    lark.Lark
        A parser whose ``parse(text)`` returns the raw parse tree; ``tsym.compiler.parse`` turns
        that tree into validated specs.
    """
    return Lark(
        load_grammar(),
        parser="lalr",
        lexer="contextual",
        start="start",
        maybe_placeholders=False,
    )
