"""Every error the runtime raises on purpose, under the one root :class:`~tsym.compiler.TsymError`.

The compiler's errors (bad ``.tsym`` specs) live in :mod:`tsym.compiler.errors`; these are the
runtime's: bad data, configs, models, checkpoints, runs and exports.  Each message says where the
problem is (``FILE:record N:`` for a data record, ``FILE:`` for a config or checkpoint) and, where
there is one, ends with a ``hint:`` line that says what to do.  Those that are also bad arguments
derive from :class:`ValueError` too.

>>> issubclass(ConfigError, TsymError) and issubclass(ConfigError, ValueError)
True
>>> str(DataError("water.xyz", 3, "atom 1 has a non-finite position", hint="fix the file"))
'water.xyz:record 3: atom 1 has a non-finite position\\nhint: fix the file'
"""
from __future__ import annotations

from tsym.compiler.errors import TsymError

__all__ = [
    "TsymError", "DataError", "LabelSpecError", "LabelError", "ConfigError", "ModelConfigError",
    "UnknownBackboneError", "BackboneConfigError", "IrrepsMismatchError", "UnknownElementError",
    "CheckpointError", "TrainError", "ExportError",
]


class DataError(TsymError):
    """A bad data record; messages start with ``FILE:record N:`` (``FILE:`` for the whole file).

    ``reason`` is a short name of the check that failed (``"bad structure"``, ``"atoms too
    close"``, ...) where the caller counts rejected records by reason.
    """

    def __init__(self, file: str, record: int | None, message: str, hint: str | None = None,
                 reason: str | None = None):
        self.file = file
        self.record = record
        self.message = message
        self.hint = hint
        self.reason = reason
        where = f"{file}:record {record}:" if record is not None else f"{file}:"
        text = f"{where} {message}"
        if hint:
            text += f"\nhint: {hint}"
        super().__init__(text)


class LabelSpecError(TsymError, ValueError):
    """A label configuration that cannot be right (unknown format, level or order mismatch)."""


class LabelError(TsymError):
    """Reference labels cannot be computed (PySCF missing or too new, a failed SCF run)."""


class ConfigError(TsymError, ValueError):
    """A training configuration that is not valid; the message starts with ``FILE:``."""


class ModelConfigError(TsymError, ValueError):
    """A backbone or head that does not fit the contract, or a bad model configuration."""


class UnknownBackboneError(ModelConfigError):
    """``build_model(backbone=NAME)`` with a name no backbone is registered under."""


class BackboneConfigError(TsymError, ValueError):
    """A bad constructor argument of a backbone module (widths, irreps, names)."""


class IrrepsMismatchError(BackboneConfigError):
    """A module was built with irreps for a field that differ from those it needs."""


class UnknownElementError(TsymError, ValueError):
    """An atomic number outside the range the element embedding covers."""


class CheckpointError(TsymError):
    """A checkpoint file that is not a tsym model, or that disagrees with the arguments given."""


class TrainError(TsymError):
    """A run directory or resume request that does not fit (checkpoint present, config changed)."""


class ExportError(TsymError):
    """The model could not be exported, or the exported module disagrees with it."""
