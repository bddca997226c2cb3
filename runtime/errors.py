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

import signal

from tsym.compiler.errors import TsymError

__all__ = [
    "TsymError", "DataError", "LabelSpecError", "LabelError", "ConfigError", "ModelConfigError",
    "UnknownBackboneError", "BackboneConfigError", "IrrepsMismatchError", "UnknownElementError",
    "CheckpointError", "NonFiniteWeightsError", "TrainError", "DivergedError", "TrainInterrupted",
    "ExportError", "PredictError", "NonFinitePredictionError", "KernelError",
    "CommitteeError",
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


class NonFiniteWeightsError(CheckpointError):
    """A checkpoint whose weights hold NaN or inf (e.g. from a diverged run): refused."""


class TrainError(TsymError):
    """A run directory or resume request that does not fit (checkpoint present, config changed,
    another training holding the folder, inputs that differ from the run's start)."""


class TrainInterrupted(TrainError):
    """SIGTERM or SIGINT stopped the run after writing ``last.pt``; ``exit_code`` is 128 + signal.

    >>> err = TrainInterrupted(15, "runs/a", 40, "a.yaml")
    >>> err.exit_code, str(err).splitlines()[0]
    (143, 'runs/a: stopped by SIGTERM after step 40; last.pt is saved')
    """

    def __init__(self, signum: int, run_dir, step: int, config: str = "<dict>"):
        config = config if config != "<dict>" else "CONFIG"
        super().__init__(f"{run_dir}: stopped by {signal.Signals(signum).name} after step {step}; "
                         f"last.pt is saved\nhint: resume with: tsym train {config} --run-dir "
                         f"{run_dir} --resume")
        self.signum = signum
        self.exit_code = 128 + signum


class DivergedError(TrainError):
    """A non-finite loss or parameter: the run stops before writing any non-finite state.

    Attributes: ``step`` (the optimiser step that failed, 1-based), ``heads`` (the heads whose
    loss is non-finite; empty when a parameter went non-finite with finite losses),
    ``kept`` (``{checkpoint file name: its step}`` of the checkpoints left as they were).
    """

    def __init__(self, message: str, step: int, heads: tuple[str, ...], kept: dict[str, int]):
        super().__init__(message)
        self.step, self.heads, self.kept = step, heads, kept


class ExportError(TsymError):
    """The model could not be exported, or the exported module disagrees with it."""


class PredictError(TsymError):
    """A prediction request that cannot be carried out (batch size, output not writable)."""


class NonFinitePredictionError(TsymError):
    """A prediction holding NaN or inf (weights that overflow): refused, never written."""


class KernelError(TsymError, ValueError):
    """A kernel readout that cannot be built, fitted or applied (a plan clause it cannot keep,
    features without the irreps a target needs, a kernel file that does not fit the model)."""


class CommitteeError(TsymError, ValueError):
    """A committee (ensemble of runs) that cannot be formed: members with different specs or
    labels, fewer than two members, or a scale fitted on the data it is judged on."""
