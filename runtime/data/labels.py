"""Where a label lives in an extended XYZ file and how it is written: :class:`LabelSpec`.

A leaf of :mod:`tsym.runtime.data`: the records' checks (:mod:`~tsym.runtime.data.records`) and
the data set (:mod:`~tsym.runtime.data.dataset`) both read it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from tsym.runtime.errors import LabelSpecError

__all__ = ["LabelSpec", "FORMATS", "LEVELS"]

FORMATS = ("flat", "voigt")
LEVELS = ("structure", "atom")


@dataclass(frozen=True)
class LabelSpec:
    """Where one label lives in an extxyz file and how it is written.

    Parameters
    ----------
    name : str
        The spec (HeadPlan) name; graphs carry the label as ``"label:<name>"``.
    key : str
        Key in ``atoms.info`` (structure level) or ``atoms.arrays`` (atom level).
    format : {"flat", "voigt"}
        ``"flat"``: the ``3**order`` Cartesian components, row-major.  ``"voigt"``: a row-major
        6x6 (order 4, stiffness) or 3x6 (order 3, piezoelectric ``e``) in IEEE order, no factors.
    unit : str or None
        Unit of the values after scaling (documentation; compared with nothing).
    scale : float
        The values are multiplied by ``scale`` when read (unit conversion).
    level : {"structure", "atom"}
    order : int or None
        Tensor rank; taken from the plan when one is given, else inferred from the first record.

    A YAML mapping with these keys maps one to one: ``LabelSpec.from_dict(d)``.
    """

    name: str
    key: str
    format: str = "flat"
    unit: str | None = None
    scale: float = 1.0
    level: str = "structure"
    order: int | None = None

    def __post_init__(self):
        for what in ("name", "key"):
            value = getattr(self, what)
            if not isinstance(value, str) or not value:
                raise LabelSpecError(f"label {what} must be a non-empty string, got {value!r}")
        if self.format not in FORMATS:
            raise LabelSpecError(f"label {self.name!r}: format must be one of {FORMATS}, "
                                 f"got {self.format!r}")
        if self.level not in LEVELS:
            raise LabelSpecError(f"label {self.name!r}: level must be one of {LEVELS}, "
                                 f"got {self.level!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale)
                and self.scale != 0):
            raise LabelSpecError(f"label {self.name!r}: scale must be a finite nonzero number, "
                                 f"got {self.scale!r}")
        if self.order is not None and not (isinstance(self.order, int) and 0 <= self.order <= 12):
            raise LabelSpecError(f"label {self.name!r}: order must be an integer 0..12, "
                                 f"got {self.order!r}")
        if self.format == "voigt" and self.order not in (None, 3, 4):
            raise LabelSpecError(f"label {self.name!r}: Voigt form exists for order 3 (3x6) and "
                                 f"4 (6x6), not {self.order}")

    @classmethod
    def from_dict(cls, d: Mapping) -> LabelSpec:
        """Build from a mapping with exactly the field names (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise LabelSpecError(f"unknown label field(s) {unknown}; allowed: {sorted(names)}")
        return cls(**dict(d))

    def to_dict(self) -> dict:
        return asdict(self)

    def with_order(self, order: int) -> LabelSpec:
        return LabelSpec(**{**asdict(self), "order": order})
