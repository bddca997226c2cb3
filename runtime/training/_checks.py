"""Checks behind the training config: a strict YAML loader, typed keys, ranges.

Every error is a :class:`~tsym.runtime.errors.ConfigError` naming the file, the section and the
key (``where``), so a bad config never gives a traceback from inside the code.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path

import yaml

from tsym.runtime.errors import ConfigError

#: The largest seed (seeds are non-negative 64-bit integers for torch and numpy).
SEED_MAX = 2**63 - 1


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {first.line + 1}); "
                    "merge the two", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


# YAML 1.2 floats without a dot (``lr: 1e-3``), which PyYAML (YAML 1.1) reads as strings: the
# number they plainly are.  (Added to this loader only: its own copy of the resolvers.)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _resolve(path: str | None, base: Path | None) -> str | None:
    if path is None or base is None or Path(path).is_absolute():
        return path
    return str(base.resolve() / path)


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _unknown(source: str, where: str, raw: dict, allowed) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key '{key}' in {where} (allowed: "
                              f"{', '.join(allowed)})")


def _build(typ, raw, where: str):
    """``typ(**raw)`` after checking keys and types; errors name ``where`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(typ)}
    hints = typing.get_type_hints(typ)
    for key in raw:
        if key not in fields:
            allowed = ", ".join(n for n in fields if n != "name")
            raise ConfigError(f"{where}: unknown key '{key}' (allowed: {allowed})")
    missing = [n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing key '{missing[0]}'")
    values = {k: _coerce(where, k, v, hints[k]) for k, v in raw.items()}
    for key, value in values.items():
        _finite(where, key, value)
    obj = typ(**values)
    obj.check(where)
    return obj


def _coerce(where: str, key: str, value, hint):
    """Check ``value`` against the annotation ``hint``; ints are accepted for floats."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where}: '{key}' must not be empty (null)")
    for opt in options:
        if opt is bool and isinstance(value, bool):
            return value
        if opt is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if opt is float and _is_number(value):
            if isinstance(value, int) and abs(value) >= 2**1023:  # would overflow to inf
                raise ConfigError(f"{where}: '{key}' must be a finite number, got {value!r}")
            return float(value)  # .inf/.nan: refused by _finite, which sees every value
        if opt is str and isinstance(value, str):
            return value
        if opt is dict and isinstance(value, dict):
            return dict(value)
        if opt is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
    names = " or ".join("null" if o is type(None) else ("list" if o is tuple else o.__name__)
                        for o in options)
    raise ConfigError(f"{where}: '{key}' must be {names}, got {type(value).__name__} {value!r}")


def _finite(where: str, key: str, value) -> None:
    """Every number in ``value`` (nested dicts and lists too) is finite: ``.inf``/``.nan`` are
    never meaningful settings (``null`` turns an optional one off)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(where, f"{key}.{k}", v)
    elif isinstance(value, (list, tuple)):
        for k, v in enumerate(value):
            _finite(where, f"{key}[{k}]", v)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: '{key}' must be a finite number, got {value!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _seed(where: str, key: str, value: int) -> None:
    if not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{where}: '{key}' must be an integer in [0, 2**63 - 1], got {value!r}")


def _choice(where: str, key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: '{key}' must be one of {', '.join(allowed)}; got {value!r}")


def _positive(where: str, key: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{where}: '{key}' must be > 0, got {value!r}")


def _nonneg(where: str, key: str, value) -> None:
    if not value >= 0:
        raise ConfigError(f"{where}: '{key}' must be >= 0, got {value!r}")
