"""The import rule of the README's Architecture section, checked on the source with ``ast``.

* no import cycle among tsym modules (imports at module level; ``if TYPE_CHECKING:`` blocks are
  annotations only and do not count);
* no import inside a function or class, except of the optional heavy libraries in
  :data:`LAZY_ALLOWED` (PySCF, mace-torch, nequip and sevenn are optional extras; matplotlib
  loads only for plots), and at the
  heavy-import sites of :data:`LAZY_SITES`: the compiler and its command line (``inspect``,
  ``compile``, ``table``, ``--help``) run without torch and e3nn, which load where they are used
  (tests/test_cli_fast.py checks that behaviour by running the commands);
* no module imports a private (``_name``) module or name of another package;
* arrows point down the layers of :data:`LAYERS`: a module imports only modules of a lower layer
  or of its own group, never a sibling group of the same layer (``nn`` and ``data``) nor one
  above (the runtime never imports ``tsym`` or ``tsym.cli``; the compiler never the runtime);
* the modules of ``compiler/head/`` stay standalone
  (``emit`` pastes them into generated modules).

The checker runs on the repository and on small planted trees that must fail.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .conftest import REPO

#: Import name prefix -> source folder (pyproject's ``package-dir``).
ROOTS = {"tsym": "tsym", "tsym.compiler": "compiler", "tsym.runtime": "runtime",
         "tsym.grammar": "grammar"}

#: Folders of code that uses tsym without being part of it: held to the rules that keep it a
#: user of the public API (no private module or name of another package, no import of the
#: ``tests`` package, no ``sys.path`` edits, no import cycle), not to the layers.
USERS = {"benchmarks": "benchmarks", "scripts": "scripts"}

#: Groups of modules by layer, lowest first; a module may import its own group and lower layers.
LAYERS = (
    ("tsym.grammar",),
    ("tsym.compiler",),
    ("tsym.runtime.errors", "tsym.runtime.keys", "tsym.runtime.neighbours",
     "tsym.runtime.finite"),
    ("tsym.runtime.graph",),
    ("tsym.runtime.equivariance",),
    ("tsym.runtime.nn", "tsym.runtime.data"),
    ("tsym.runtime.model",),
    ("tsym.runtime.spectra",),
    ("tsym.runtime.training", "tsym.runtime.inference"),  # siblings: neither imports the other
    ("tsym.runtime.kernel",),  # a readout over trained models: reads their plans and data
    ("tsym.runtime",),  # the package's __init__: its public API
    ("tsym",),  # the public API and the CLI
)

#: Libraries a function may import lazily: optional or slow to import, needed by one verb.
LAZY_ALLOWED = ("pyscf", "matplotlib", "mace", "nequip", "sevenn")

#: The heavy-import sites: module (``pkg.*``: every module under ``pkg``) -> what its functions may
#: import (a prefix: a module or library and everything under it).  Only these keep torch, e3nn,
#: ase and the runtime off the compiler's start-up path.
LAZY_SITES = {
    "tsym": ("tsym.runtime", "tsym.compiler.head"),  # module __getattr__ (PEP 562): build_model...
    # module __getattr__: SelfMixHead and its kin
    "tsym.compiler": ("tsym.compiler.head",),
    "tsym.compiler.plan": ("torch",),  # a plan's torch tensors, made on first access
    "tsym.cli.*": ("tsym.runtime", "torch", "ase"),  # each verb loads its work when it runs
}


def lazy_allowed(module: str, target: str) -> bool:
    """Whether a function of ``module`` may import ``target`` (:data:`LAZY_SITES`)."""
    for site, targets in LAZY_SITES.items():
        if module == site or (site.endswith(".*") and module.startswith(site[:-1])):
            if any(target == t or target.startswith(t + ".") for t in targets):
                return True
    return False

#: Modules that must import nothing but these (the head is pasted into standalone modules), and
#: each other, and ``TsymError`` (which ``emit`` replaces by a local class).
STANDALONE_PACKAGE = "tsym.compiler.head"
STANDALONE_LIBRARIES = ("math", "typing", "torch", "e3nn")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a tsym module, or the external dotted name)
    names: tuple[str, ...]  # names taken from it ("from target import a, b"), () for "import"
    line: int
    lazy: bool  # inside a function or class
    typing_only: bool  # inside "if TYPE_CHECKING:"


def discover(root: Path, roots: dict[str, str]) -> dict[str, Path]:
    """``{module name: file}`` for every ``.py`` file under the package folders."""
    modules = {}
    for prefix, folder in roots.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("").parts
            if any(part.startswith(".") for part in rel):
                continue
            if rel[-1] == "__init__":
                rel = rel[:-1]
            name = ".".join((prefix,) + rel)
            modules[name] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _typing_block(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import statement of one module, resolved to module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if _is_package(path) else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(name, alias.name, (), child.lineno, lazy, typing_only))
            elif isinstance(child, ast.ImportFrom):
                if child.module == "__future__":
                    continue
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                names = tuple(a.name for a in child.names)
                submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
                for sub in submodules:  # "from pkg import module"
                    found.append(Import(name, sub, (), child.lineno, lazy, typing_only))
                rest = tuple(n for n in names if f"{target}.{n}" not in modules)
                if rest or not submodules:
                    found.append(Import(name, target, rest, child.lineno, lazy, typing_only))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                    ast.Lambda)):
                visit(child, True, typing_only)
            elif isinstance(child, ast.If) and _typing_block(child):
                visit(child, lazy, True)
            else:
                visit(child, lazy, typing_only)

    visit(tree, False, False)
    return found


def _group(module: str) -> tuple[int, str]:
    """(layer, group prefix) of a tsym module: the longest matching prefix of :data:`LAYERS`."""
    best = (-1, "")
    for rank, group in enumerate(LAYERS):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = (rank, prefix)
    return best


def _private_home(target: str, names: tuple[str, ...], modules: dict[str, Path]
                  ) -> list[tuple[str, str]]:
    """``(private thing, package it is private to)`` for the private parts of one import."""
    out = []
    parts = target.split(".")
    for k, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            out.append((".".join(parts[:k + 1]), ".".join(parts[:k])))
            break
    is_package = target in modules and _is_package(modules[target])
    home = target if is_package else target.rpartition(".")[0]
    out += [(f"{target}.{n}", home) for n in names if n.startswith("_") and not n.startswith("__")]
    return out


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import): the cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:  # Tarjan, recursive (the graph has ~100 nodes)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return cycles


def _edits_sys_path(tree: ast.AST) -> list[int]:
    """Lines that call ``sys.path.insert``/``append``/``extend`` (or assign ``sys.path``)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("insert", "append", "extend") and \
                isinstance(node.value, ast.Attribute) and node.value.attr == "path" and \
                isinstance(node.value.value, ast.Name) and node.value.value.id == "sys":
            lines.append(node.lineno)
    return lines


def check_users(root: Path, users: dict[str, str] = USERS, roots: dict[str, str] = ROOTS
                ) -> list[str]:
    """Violations in the folders of :data:`USERS` (benchmarks, scripts): private imports across
    packages, imports of ``tests``, ``sys.path`` edits and import cycles, one line each."""
    package_modules = discover(root, roots)
    modules = discover(root, users)
    problems: list[str] = []
    edges: dict[str, set[str]] = {m: set() for m in modules}
    everything = {**package_modules, **modules}
    for name, path in modules.items():
        where = f"{path.relative_to(root)}"
        for line in _edits_sys_path(ast.parse(path.read_text(encoding="utf-8"))):
            problems.append(f"{where}:{line}: edits sys.path (import the package instead)")
        for imp in imports_of(name, path, everything):
            if imp.target == "tests" or imp.target.startswith("tests."):
                problems.append(f"{where}:{imp.line}: imports {imp.target} (the test suite is "
                                "no library)")
            if imp.target in everything or imp.target.startswith("tsym."):
                for thing, home in _private_home(imp.target, imp.names, everything):
                    if not _inside(name, home):
                        problems.append(f"{where}:{imp.line}: imports {thing}, private to {home}")
            if imp.target in modules:
                edges[name].add(imp.target)
    for cycle in find_cycles(edges):
        problems.append(f"import cycle among {', '.join(cycle)}")
    return problems


def check_tree(root: Path, roots: dict[str, str] = ROOTS) -> list[str]:
    """Every violation of the import rule under ``root``, one line each (empty: all good)."""
    modules = discover(root, roots)
    problems: list[str] = []
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        where = f"{path.relative_to(root)}"
        for imp in imports_of(name, path, modules):
            internal = imp.target in modules or imp.target == "tsym" or imp.target.startswith(
                "tsym.")
            top = imp.target.split(".")[0]
            if imp.lazy and not (not internal and top in LAZY_ALLOWED) and not lazy_allowed(
                    name, imp.target):
                problems.append(f"{where}:{imp.line}: import of {imp.target} inside a function "
                                "(import at module level)")
            pasted = _inside(imp.target, STANDALONE_PACKAGE) or (
                imp.target == "tsym.compiler.errors" and imp.names == ("TsymError",))
            if (_inside(name, STANDALONE_PACKAGE) and top not in STANDALONE_LIBRARIES
                    and not pasted):
                problems.append(f"{where}:{imp.line}: {name} must stay standalone "
                                f"({', '.join(STANDALONE_LIBRARIES)} only), imports {imp.target}")
            if top == "tests":
                problems.append(f"{where}:{imp.line}: imports {imp.target} (the test suite is "
                                "no library)")
            if not internal:
                continue
            for thing, home in _private_home(imp.target, imp.names, modules):
                if not _inside(name, home):
                    problems.append(f"{where}:{imp.line}: imports {thing}, private to {home}")
            src_rank, src_group = _group(name)
            dst_rank, dst_group = _group(imp.target)
            if dst_rank > src_rank or (dst_rank == src_rank and dst_group != src_group):
                problems.append(f"{where}:{imp.line}: {name} (layer {src_group}) imports "
                                f"{imp.target} (layer {dst_group}): imports point down")
            if imp.target in modules:  # every import counts: TYPE_CHECKING and lazy ones too
                edges[name].add(imp.target)
    for cycle in find_cycles(edges):
        problems.append(f"import cycle among {', '.join(cycle)}")
    return problems


def test_repository_follows_the_import_rule():
    problems = check_tree(REPO)
    assert problems == [], "\n".join(problems)


def test_benchmarks_and_scripts_use_the_public_api():
    problems = check_users(REPO)
    assert problems == [], "\n".join(problems)


def _plant(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


CLEAN = {
    "tsym/__init__.py": "from tsym.runtime.model import build\n",
    "compiler/__init__.py": "from .head import Head\n",
    "compiler/head.py": "import torch\nclass Head: pass\n",
    "compiler/_rational.py": "X = 1\n",
    "compiler/basis.py": "from ._rational import X\n",
    "runtime/__init__.py": "from .model import build\n",
    "runtime/keys.py": "POSITIONS = 'positions'\n",
    "runtime/model.py": "from tsym.runtime import keys\nfrom tsym.compiler import Head\n"
                        "def build():\n    import pyscf\n",
    "compiler/plan.py": "def tensor():\n    import torch\n",  # a heavy-import site
    "tsym/cli/train.py": "def cmd():\n    from tsym.runtime.model import build\n",
    "runtime/nn/__init__.py": "",
    "runtime/nn/xpainn.py": "from tsym.runtime import keys\n",
}


def test_clean_planted_tree_passes(tmp_path):
    assert check_tree(_plant(tmp_path, CLEAN)) == []


def test_planted_violations_are_found(tmp_path):
    bad = dict(CLEAN)
    bad["runtime/keys.py"] = "from tsym.runtime.model import build\n"  # cycle, and a leaf up
    bad["runtime/nn/xpainn.py"] = ("from tsym.compiler._rational import X\n"  # private module
                                   "from tsym.compiler.head import _helper\n"  # private name
                                   "def f():\n    from tsym.runtime import keys\n")  # lazy
    bad["runtime/data/__init__.py"] = "from tsym.runtime.nn import xpainn\n"  # sibling group
    bad["compiler/plan.py"] = "import tsym.runtime.keys\n"  # compiler -> runtime
    bad["compiler/head.py"] = "import numpy\nclass Head: pass\n"  # not standalone
    bad["runtime/graph.py"] = "import tsym\n"  # runtime -> the top package
    bad["compiler/spec.py"] = "def f():\n    import torch\n"  # lazy, not a heavy-import site
    problems = "\n".join(check_tree(_plant(tmp_path, bad)))
    expected = [
        r"import cycle among tsym.runtime.keys, tsym.runtime.model",
        r"imports tsym.compiler._rational, private to tsym.compiler",
        r"imports tsym.compiler.head._helper, private to tsym.compiler",
        r"import of tsym.runtime.keys inside a function",
        r"tsym.runtime.data (layer tsym.runtime.data) imports tsym.runtime.nn.xpainn",
        r"tsym.compiler.plan (layer tsym.compiler) imports tsym.runtime.keys",
        r"tsym.compiler.head must stay standalone",
        r"tsym.runtime.graph (layer tsym.runtime.graph) imports tsym (layer tsym)",
        r"tsym.runtime.keys (layer tsym.runtime.keys) imports tsym.runtime.model",
        r"compiler/spec.py:2: import of torch inside a function",
    ]
    for line in expected:
        assert line in problems, f"not reported: {line}\n--- got:\n{problems}"


def test_planted_typing_only_cycle_is_found(tmp_path):
    """An import under ``if TYPE_CHECKING:`` closes a cycle like any other import."""
    bad = dict(CLEAN)
    bad["runtime/data/__init__.py"] = ""
    bad["runtime/data/records.py"] = ("from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n"
                                      "    from tsym.runtime.data.dataset import LabelSpec\n")
    bad["runtime/data/dataset.py"] = "from tsym.runtime.data.records import check\n"
    problems = "\n".join(check_tree(_plant(tmp_path, bad)))
    assert "import cycle among tsym.runtime.data.dataset, tsym.runtime.data.records" in problems


def test_planted_violations_in_benchmarks_and_scripts_are_found(tmp_path):
    files = dict(CLEAN)
    files["benchmarks/__init__.py"] = ""
    files["benchmarks/common.py"] = "from tsym.runtime.model import build\n"  # public: fine
    files["benchmarks/speed.py"] = (
        "import sys\n"
        "sys.path.insert(0, 'somewhere')\n"  # a sys.path edit
        "from tsym.compiler._rational import X\n"  # a private module of tsym
        "from tests.compiler import helpers\n"  # the test suite
        "from benchmarks.common import build\n")  # the helper module: fine
    files["scripts/tool.py"] = "from tsym.compiler.head import _helper\n"  # a private name
    root = _plant(tmp_path, files)
    problems = "\n".join(check_users(root))
    for line in [r"benchmarks/speed.py:2: edits sys.path",
                 r"benchmarks/speed.py:3: imports tsym.compiler._rational, private to tsym.compiler",
                 r"benchmarks/speed.py:4: imports tests.compiler (the test suite is no library)",
                 r"scripts/tool.py:1: imports tsym.compiler.head._helper, private to "
                 r"tsym.compiler"]:
        assert line in problems, f"not reported: {line}\n--- got:\n{problems}"
    assert "common.py" not in problems and problems.count("\n") == 3
