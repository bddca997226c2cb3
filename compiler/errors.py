"""The one error root of tsym and the spec-located errors.

Every error a user can cause derives from :class:`TsymError`.  Errors about a ``.tsym`` spec carry a
:class:`SourceLocation` and render as::

    specs/bad.tsym:3:15: symmetry term 'ijl' is not a permutation of the indices 'ijk'
        symmetry  ijk = ijl
                        ^
    hint: write a term that uses each of the letters i, j, k exactly once, e.g. 'ikj'

The message always starts with ``FILE:LINE:COL:`` so that editors and tests can rely on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lark import Token

__all__ = [
    "TsymError",
    "SourceLocation",
    "Source",
    "SpecError",
    "SpecSyntaxError",
    "UnknownClauseError",
    "DuplicateClauseError",
    "MissingClauseError",
    "DuplicateTensorError",
    "IndexLetterError",
    "SymmetryTermError",
    "TracelessPairError",
    "ClauseValueError",
    "RelationError",
    "ConstraintError",
    "SpecWarning",
    "SpecFileError",
    "ZeroTensorError",
    "SpecTooLargeError",
    "TsymWarning",
    "SlowBasisWarning",
]


class TsymError(Exception):
    """Root of every error tsym raises on purpose (bad specs, bad data, bad configs)."""


@dataclass(frozen=True)
class SourceLocation:
    """A position in a spec file: 1-based line and column, plus the text of that line."""

    file: str
    line: int
    column: int
    line_text: str = ""

    def prefix(self) -> str:
        return f"{self.file}:{self.line}:{self.column}:"

    def caret(self) -> str:
        """The offending line followed by a caret under ``column`` (tabs kept for alignment)."""
        if not self.line_text:
            return ""
        text = self.line_text.rstrip("\n")
        shown = [shown_char(ch) for ch in text]  # a NUL byte is shown as \x00, not a blank
        before = shown[: max(self.column - 1, 0)]
        pad = "".join(ch if ch == "\t" else " " * len(ch) for ch in before)
        return f"    {''.join(shown)}\n    {pad}^"


def shown_char(ch: str) -> str:
    r"""``ch`` as printed in a message: itself, or escaped when it is invisible (``\x00``).

    >>> shown_char("a"), shown_char(chr(0)), shown_char("\t")
    ('a', '\\x00', '\t')
    """
    return ch if ch.isprintable() or ch == "\t" else ascii(ch)[1:-1]


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



class SpecError(TsymError):
    """An error located in a ``.tsym`` spec.

    ``str(err)`` is ``"FILE:LINE:COL: message"``, then the line with a caret, then ``hint: ...``.
    """

    def __init__(self, loc: SourceLocation, message: str, hint: str | None = None):
        self.loc = loc
        self.message = message
        self.hint = hint
        parts = [f"{loc.prefix()} {message}"]
        caret = loc.caret()
        if caret:
            parts.append(caret)
        if hint:
            parts.append(f"hint: {hint}")
        super().__init__("\n".join(parts))


class SpecSyntaxError(SpecError):
    """The text does not follow the .tsym grammar."""


class UnknownClauseError(SpecError):
    """A clause keyword that tsym does not know (e.g. ``symetry``)."""


class DuplicateClauseError(SpecError):
    """A clause that may appear once appears twice (e.g. two ``indices`` lines)."""


class MissingClauseError(SpecError):
    """A required clause is missing (``indices``)."""


class DuplicateTensorError(SpecError):
    """Two tensor blocks with the same name."""


class IndexLetterError(SpecError):
    """A repeated index letter in ``indices``, or a letter that is not one of the indices."""


class SymmetryTermError(SpecError):
    """A symmetry term that is not a permutation of the indices."""


class TracelessPairError(SpecError):
    """``traceless`` names letters that are not two distinct indices of the tensor."""


class ClauseValueError(SpecError):
    """A clause value outside its allowed set (e.g. ``parity polr``; allowed: polar, axial)."""


class RelationError(SpecError):
    """A ``relation`` clause whose terms are not permutations of the indices, or that says 0 = 0."""


class ConstraintError(SpecError):
    """``sum_rule`` or ``positive`` on a tensor where it has no meaning (e.g. ``positive`` on an
    odd-rank or axial tensor, ``sum_rule`` on a structure-level tensor)."""


class TsymWarning(UserWarning):
    """Root of the warnings tsym gives (the CLI prints them as ``tsym: warning: ...``)."""


class SpecWarning(TsymWarning):
    """Something in a spec that changes nothing (e.g. a relation the symmetries already imply).

    The message starts with ``FILE:LINE:COL:`` like the errors.
    """


class SpecFileError(TsymError):
    """A spec file that cannot be read (missing, a directory, no permission)."""


class ZeroTensorError(SpecError):
    """The symmetries and trace conditions leave only the zero tensor."""


class SpecTooLargeError(SpecError):
    """The change of basis would not fit in memory or take too long; refused before any work."""


class SlowBasisWarning(TsymWarning):
    """The change of basis of a spec will take long to derive; the message holds the estimate."""
