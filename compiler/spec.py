"""The validated, frozen model of one ``.tsym`` tensor block.

A :class:`TensorSpec` is what the rest of the compiler reads.  It is built by
:func:`tsym.compiler.parse.parse_text` (with source locations) or directly in Python; either way
the constructor checks it, so an invalid spec never exists.  ``to_source`` prints the canonical
text of the block, and parsing that text gives back an equal spec.

>>> spec = TensorSpec("polarizability", "ij", (SymmetryEquation.of("ij", "ji"),), units="e^2/E_h")
>>> spec.order
2
>>> print(spec.to_source())
tensor polarizability {
    indices   ij
    symmetry  ij = ji
    parity    polar
    level     structure
    pool      sum
    units     "e^2/E_h"
}

Locations (``loc``) are excluded from equality and hashing: two specs that say the same thing
are equal wherever they were written.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction

from .positive import check_positive
from .errors import (
    ClauseValueError,
    ConstraintError,
    IndexLetterError,
    RelationError,
    SourceLocation,
    SpecSyntaxError,
    SymmetryTermError,
    TracelessPairError,
)

__all__ = [
    "CLAUSES",
    "REPEATABLE_CLAUSES",
    "PARITIES",
    "LEVELS",
    "POOLS",
    "SUM_RULES",
    "POSITIVITY",
    "NOWHERE",
    "SymmetryTerm",
    "SymmetryEquation",
    "TracePair",
    "RelationTerm",
    "Relation",
    "Constraint",
    "TensorSpec",
]

#: Clause keywords in canonical order (the order ``to_source`` prints them in).
CLAUSES = (
    "indices", "symmetry", "parity", "traceless", "relation", "sum_rule", "positive", "level",
    "pool", "units",
)
#: Clauses that may appear more than once in a block.
REPEATABLE_CLAUSES = ("symmetry", "traceless", "relation")
#: Allowed values, the default first.
PARITIES = ("polar", "axial")
LEVELS = ("structure", "atom")
POOLS = ("sum", "mean")
#: Values of ``sum_rule`` (``level atom`` only) and ``positive`` (no default: the clause is optional).
SUM_RULES = ("zero",)
POSITIVITY = ("definite", "semidefinite")

#: The location given to objects built in Python rather than parsed from a file.
NOWHERE = SourceLocation("<python>", 0, 0, "")

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LETTER_RE = re.compile(r"[A-Za-z]")
_KEY_WIDTH = 10  # "traceless" + one space: the value column of the canonical layout


def _example_permutation(indices: str) -> str:
    """A permutation of ``indices`` other than the identity (when there is one), for hints."""
    if len(indices) < 2:
        return indices
    return indices[1] + indices[0] + indices[2:]


def _letter_list(indices: str) -> str:
    return ", ".join(indices)


@dataclass(frozen=True)
class SymmetryTerm:
    """One side of a symmetry equation: ``-jikl`` is ``SymmetryTerm(-1, "jikl")``."""

    sign: int
    letters: str
    loc: SourceLocation = field(compare=False, repr=False, default=NOWHERE)

    def __post_init__(self) -> None:
        if self.sign not in (1, -1):
            raise SymmetryTermError(self.loc, f"the sign of a symmetry term is +1 or -1, not {self.sign!r}")

    def to_source(self) -> str:
        return ("-" if self.sign < 0 else "") + self.letters


@dataclass(frozen=True)
class SymmetryEquation:
    """``T_{terms[0]} = T_{terms[1]} = ...``: every term names the same tensor component."""

    terms: tuple[SymmetryTerm, ...]
    loc: SourceLocation = field(compare=False, repr=False, default=NOWHERE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))
        if len(self.terms) < 2:
            only = self.terms[0].to_source() if self.terms else ""
            example = _example_permutation(only.lstrip("-")) or "ji"
            raise SymmetryTermError(
                self.loc,
                f"a symmetry equation needs at least two terms, found only '{only}'",
                f"relate it to another ordering with '=', e.g. 'symmetry {only or 'ij'} = {example}'",
            )

    @classmethod
    def of(cls, *terms: str, loc: SourceLocation = NOWHERE) -> SymmetryEquation:
        """Build from term strings: ``SymmetryEquation.of("ij", "-ji")``."""
        parsed = tuple(SymmetryTerm(-1 if t.startswith("-") else 1, t.lstrip("+-"), loc) for t in terms)
        return cls(parsed, loc)

    def to_source(self) -> str:
        return " = ".join(term.to_source() for term in self.terms)


@dataclass(frozen=True)
class TracePair:
    """A pair of index letters whose contraction vanishes (``traceless ij``)."""

    letters: str
    loc: SourceLocation = field(compare=False, repr=False, default=NOWHERE)

    def __post_init__(self) -> None:
        if len(self.letters) != 2:
            raise TracelessPairError(
                self.loc,
                f"traceless takes a pair of two index letters, got '{self.letters}'",
                "write the two letters of the contracted pair together, e.g. 'traceless ij'",
            )
        if self.letters[0] == self.letters[1]:
            raise TracelessPairError(
                self.loc,
                f"traceless pair '{self.letters}' names the letter '{self.letters[0]}' twice",
                "a trace contracts two different indices, e.g. 'traceless ij'",
            )


def _coefficient_source(c: Fraction) -> str:
    return "" if abs(c) == 1 else f"{abs(c)} "


@dataclass(frozen=True)
class RelationTerm:
    """``coeff * T_letters`` in a relation: ``-1/2 jki`` is ``RelationTerm(Fraction(-1, 2), "jki")``."""

    coeff: Fraction
    letters: str
    loc: SourceLocation = field(compare=False, repr=False, default=NOWHERE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff", Fraction(self.coeff))


@dataclass(frozen=True)
class Relation:
    """``sum_k coeff_k T_{letters_k} = 0`` for every value of the index letters.

    Every term is a permutation of the indices, so the relation is a linear map built from slot
    permutations; it commutes with the action of O(3) (which acts the same way on every slot), and
    the tensors that satisfy it form a representation: no relation of this form can break
    rotation or reflection invariance.  Terms are normalised when the relation is built: all on
    the left-hand side, equal letters merged, zero coefficients dropped, in order of appearance.

    >>> Relation.of("ijk", "jki", (Fraction(1, 2), "kij"), (-1, "ijk")).to_source()
    'jki + 1/2 kij = 0'
    """

    terms: tuple[RelationTerm, ...]
    loc: SourceLocation = field(compare=False, repr=False, default=NOWHERE)

    def __post_init__(self) -> None:
        merged: dict[str, RelationTerm] = {}
        for term in self.terms:
            old = merged.get(term.letters)
            merged[term.letters] = term if old is None else RelationTerm(old.coeff + term.coeff, old.letters, old.loc)
        terms = tuple(t for t in merged.values() if t.coeff != 0)
        if not terms:
            raise RelationError(
                self.loc,
                "this relation says 0 = 0: its terms cancel",
                "a relation equates different index orders, e.g. 'relation ijk + jki + kij = 0'",
            )
        object.__setattr__(self, "terms", terms)

    @classmethod
    def of(cls, *terms, loc: SourceLocation = NOWHERE) -> Relation:
        """From letters (coefficient 1) or ``(coeff, letters)`` pairs; the sum equals zero."""
        parsed = [RelationTerm(*(t if isinstance(t, tuple) else (1, t)), loc) for t in terms]
        return cls(tuple(parsed), loc)

    def to_source(self) -> str:
        first, *rest = self.terms
        text = ("-" if first.coeff < 0 else "") + _coefficient_source(first.coeff) + first.letters
        for term in rest:
            text += (" - " if term.coeff < 0 else " + ") + _coefficient_source(term.coeff) + term.letters
        return text + " = 0"


@dataclass(frozen=True)
class Constraint:
    """The value of a ``sum_rule`` or ``positive`` clause and where it was written."""

    value: str
    loc: SourceLocation = field(compare=False, repr=False, default=NOWHERE)


@dataclass(frozen=True)
class TensorSpec:
    """A validated tensor block of a ``.tsym`` file.

    Parameters
    ----------
    name : str
        An identifier, unique within its file.
    indices : str
        One distinct ASCII letter per index, e.g. ``"ijkl"``; the order is ``len(indices)``.
    symmetries : tuple of SymmetryEquation
        Each term a signed permutation of ``indices``.
    parity : {"polar", "axial"}
        ``axial`` for a pseudo-tensor (an extra sign under inversion).
    traceless : tuple of TracePair
        Index pairs whose contraction is zero.
    level : {"structure", "atom"}
        One tensor per structure, or one per atom.
    pool : {"sum", "mean"}
        How per-atom contributions combine into a structure tensor.  Ignored (kept, printed, but
        without effect) for ``level="atom"``, where nothing is pooled.
    units : str or None
        Free text, e.g. ``"GPa"``.
    relations : tuple of Relation
        Linear relations among index permutations (each a permutation of ``indices``).
    sum_rule : {"zero"} or None
        ``level="atom"`` only: the atom tensors of each structure add up to zero (exactly, in the
        head).
    positive : {"definite", "semidefinite"} or None
        Rank 2 with ``ij = ji``, or rank 4 with ``ijkl = jikl = ijlk = klij`` (as a 6x6 Mandel
        matrix): every prediction is positive (semi)definite by construction.
    """

    name: str
    indices: str
    symmetries: tuple[SymmetryEquation, ...] = ()
    parity: str = "polar"
    traceless: tuple[TracePair, ...] = ()
    level: str = "structure"
    pool: str = "sum"
    units: str | None = None
    relations: tuple[Relation, ...] = ()
    sum_rule: Constraint | None = None
    positive: Constraint | None = None
    loc: SourceLocation = field(compare=False, repr=False, default=NOWHERE)

    def __post_init__(self) -> None:
        object.__setattr__(self, "symmetries", tuple(self.symmetries))
        object.__setattr__(self, "traceless", tuple(self.traceless))
        object.__setattr__(self, "relations", tuple(self.relations))
        for key in ("sum_rule", "positive"):
            value = getattr(self, key)
            if isinstance(value, str):
                object.__setattr__(self, key, Constraint(value, self.loc))
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise SpecSyntaxError(
                self.loc,
                f"tensor name {self.name!r} is not an identifier",
                "use letters, digits and '_', not starting with a digit, e.g. 'dipole'",
            )
        self._check_indices()
        for clause, value, allowed in (
            ("parity", self.parity, PARITIES),
            ("level", self.level, LEVELS),
            ("pool", self.pool, POOLS),
        ):
            if value not in allowed:
                raise ClauseValueError(
                    self.loc, f"{clause} must be {' or '.join(allowed)}, not {value!r}"
                )
        if self.units is not None and not isinstance(self.units, str):
            raise ClauseValueError(self.loc, f"units must be a string or None, not {self.units!r}")
        for equation in self.symmetries:
            for term in equation.terms:
                _check_term(term, self.indices)
        for pair in self.traceless:
            for letter in pair.letters:
                if letter not in self.indices:
                    raise TracelessPairError(
                        pair.loc,
                        f"traceless pair '{pair.letters}' names '{letter}', which is not one of "
                        f"the indices '{self.indices}'",
                        f"pick two of the letters {_letter_list(self.indices)}",
                    )
        for relation in self.relations:
            for rterm in relation.terms:
                _check_term(SymmetryTerm(1, rterm.letters, rterm.loc), self.indices, "relation", RelationError)
        self._check_constraints()

    def _check_constraints(self) -> None:
        for key, allowed in (("sum_rule", SUM_RULES), ("positive", POSITIVITY)):
            value = getattr(self, key)
            if value is not None and value.value not in allowed:
                raise ClauseValueError(value.loc, f"{key} must be {' or '.join(allowed)}, not {value.value!r}")
        if self.sum_rule is not None and self.level != "atom":
            raise ConstraintError(
                self.sum_rule.loc,
                f"sum_rule applies to atom tensors, and tensor '{self.name}' is level {self.level} "
                "(one tensor per structure: nothing to sum)",
                "add 'level atom' (one tensor per atom, e.g. Born charges), or remove the sum_rule",
            )
        if self.positive is not None and self.sum_rule is not None:
            raise ConstraintError(
                self.positive.loc,
                f"tensor '{self.name}' cannot be both positive and sum to zero over the atoms "
                "(a sum of positive matrices is positive)",
                "keep one of the sum_rule and positive clauses",
            )
        if self.positive is not None:
            check_positive(self)

    def _check_indices(self) -> None:
        if not isinstance(self.indices, str) or not self.indices:
            raise IndexLetterError(self.loc, "a tensor needs at least one index letter", "e.g. indices ij")
        for pos, letter in enumerate(self.indices):
            if not _LETTER_RE.fullmatch(letter):
                raise IndexLetterError(
                    self.loc,
                    f"'{letter}' is not an index letter; indices are single ASCII letters a-z, A-Z",
                )
            if letter in self.indices[:pos]:
                raise IndexLetterError(self.loc, f"index letter '{letter}' appears twice in '{self.indices}'")

    @property
    def order(self) -> int:
        """The number of indices."""
        return len(self.indices)

    def to_source(self) -> str:
        """The canonical ``.tsym`` text of this block (every clause explicit, defaults included)."""
        lines = [f"tensor {self.name} {{", _clause("indices", self.indices)]
        lines += [_clause("symmetry", eq.to_source()) for eq in self.symmetries]
        lines.append(_clause("parity", self.parity))
        lines += [_clause("traceless", pair.letters) for pair in self.traceless]
        lines += [_clause("relation", rel.to_source()) for rel in self.relations]
        if self.sum_rule is not None:
            lines.append(_clause("sum_rule", self.sum_rule.value))
        if self.positive is not None:
            lines.append(_clause("positive", self.positive.value))
        lines.append(_clause("level", self.level))
        lines.append(_clause("pool", self.pool))
        if self.units is not None:
            lines.append(_clause("units", json.dumps(self.units, ensure_ascii=False)))
        lines.append("}")
        return "\n".join(lines)


def _clause(keyword: str, value: str) -> str:
    return f"    {keyword.ljust(_KEY_WIDTH - 1)} {value}"


def _check_term(term: SymmetryTerm, indices: str, what: str = "symmetry", error=SymmetryTermError) -> None:
    """Raise ``error`` (at ``term.loc``) unless ``term`` permutes ``indices``."""
    letters = term.letters
    if sorted(letters) == sorted(indices):
        return
    hint = (
        f"write a term that uses each of the letters {_letter_list(indices)} exactly once, "
        f"e.g. '{_example_permutation(indices)}'"
    )
    head = f"{what} term '{term.to_source()}' is not a permutation of the indices '{indices}'"
    unknown = [ch for ch in letters if ch not in indices]
    repeated = [ch for pos, ch in enumerate(letters) if ch in letters[:pos]]
    if unknown:
        detail = f"'{unknown[0]}' is not one of the indices"
    elif repeated:
        detail = f"'{repeated[0]}' appears twice"
    else:
        detail = f"it has {len(letters)} letters, the tensor has {len(indices)} indices"
    raise error(term.loc, f"{head}: {detail}", hint)
