"""One spec loader: a library name, a ``.tsym`` path or spec text -> plans.

Every entry point that takes a spec (``tsym.build_model``, the ``heads`` of a training config,
``tsym inspect``, ``compile``, ``table``, ``data check``) decides here, once, what it was given:

* **spec text** when it holds a ``{`` or a newline (every tensor block has a ``{``);
* a **file** when it names one (relative paths against ``base_dir``, a config's folder);
* a **library name** when it is the name of a spec of the library that ships with tsym
  (``compiler/specs/*.tsym``, package data: ``"polarizability"``, ``"elastic"``, ...);
* otherwise a missing file (:class:`~tsym.compiler.errors.SpecFileError`, whose hint names the
  library spec of the same stem when there is one).

>>> [p.irreps for p in load_plans("polarizability")]
['1x0e+1x2e']
>>> spec_kind("tensor d { indices i }"), spec_kind("dielectric"), "elastic" in library_names()
('text', 'library', True)
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from importlib import resources
from pathlib import Path

from .errors import SpecFileError
from .plan import HeadPlan, compile_spec
from .parse import parse_file, parse_text
from .spec import TensorSpec

__all__ = ["library_names", "library_path", "spec_kind", "resolve_spec", "load_plans"]

#: The folder of the spec library inside ``tsym.compiler`` (package data).
LIBRARY_FOLDER = "specs"


def library_names() -> list[str]:
    """The names of the library's specs (the stems of its ``.tsym`` files), sorted."""
    folder = resources.files("tsym.compiler").joinpath(LIBRARY_FOLDER)
    return sorted(e.name[:-5] for e in folder.iterdir() if e.name.endswith(".tsym"))


def library_path(name: str) -> Path:
    """The file of library spec ``name`` (``compiler/specs/NAME.tsym``)."""
    if name not in library_names():
        raise SpecFileError(f"{name}: no such spec in the library (it holds: "
                            f"{', '.join(library_names())})")
    return Path(str(resources.files("tsym.compiler").joinpath(LIBRARY_FOLDER, f"{name}.tsym")))


def _is_text(spec: str) -> bool:
    return "{" in spec or "\n" in spec


def spec_kind(spec: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> str:
    """``"text"``, ``"file"`` or ``"library"``: how :func:`load_plans` reads ``spec``."""
    if isinstance(spec, str) and _is_text(spec):
        return "text"
    path = Path(spec)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if path.exists() or not isinstance(spec, str) or spec not in library_names():
        return "file"
    return "library"


def resolve_spec(spec: str, base_dir: str | os.PathLike | None = None) -> str:
    """``spec`` as a config stores it: text and library names unchanged, a relative path joined
    to ``base_dir``."""
    if spec_kind(spec, base_dir) != "file" or base_dir is None or Path(spec).is_absolute():
        return spec
    return str(Path(base_dir) / spec)


def load_plans(spec: str | os.PathLike | HeadPlan, *, base_dir: str | os.PathLike | None = None,
               filename: str = "<string>", name: str | None = None) -> list[HeadPlan]:
    """The plans of every tensor block of ``spec`` (a plan is returned as it is).

    ``filename`` names spec text in error messages; ``base_dir`` anchors relative paths.
    ``name`` renames the tensor of a library spec (``heads: {eps: {spec: dielectric}}`` trains the
    library's ``dielectric`` as head ``eps``); a file or text keeps the names its author wrote.

    Raises
    ------
    SpecFileError
        A path that is neither a file nor a library name (the hint names a library spec of the
        same stem, when there is one).
    SpecError
        The spec does not compile (located at its file, line and column).
    """
    if isinstance(spec, HeadPlan):
        return [spec]
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"a spec is a library name, a .tsym path, spec text or a HeadPlan, got "
                        f"{type(spec).__name__}")
    specs = _parse(spec, base_dir, filename)
    if (name is not None and len(specs) == 1 and specs[0].name != name
            and not isinstance(spec, HeadPlan) and spec_kind(spec, base_dir) == "library"):
        specs = (dataclasses.replace(specs[0], name=name),)
    return [compile_spec(s) for s in specs]


def _parse(spec: str | os.PathLike, base_dir, filename: str) -> tuple[TensorSpec, ...]:
    kind = spec_kind(spec, base_dir)
    if kind == "text":
        return parse_text(spec, filename)
    if kind == "library":
        return parse_file(library_path(spec))
    path = Path(spec)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.exists():
        names = library_names()
        if path.stem in names:
            hint = f"'{path.stem}' is a spec of the library that ships with tsym: write '{path.stem}'"
        else:
            close = difflib.get_close_matches(path.stem, names, n=1)
            hint = (f"did you mean the library spec '{close[0]}'?" if close else
                    f"a spec is spec text, a .tsym file or a library name ({', '.join(names)})")
        raise SpecFileError(f"{os.fspath(spec)}: cannot read the spec file: No such file or "
                            f"directory\nhint: {hint}")
    return parse_file(path)
