"""Fuzzing parse + compile: any text gives plans or a located ``TsymError``, never anything else.

Three hypothesis strategies feed ``tsym.compile_text(text, "fuzz.tsym")``:

1. mutated valid specs (characters, tokens and lines inserted, deleted, replaced, swapped or
   duplicated; letters of symmetry terms changed; signs flipped);
2. token soups over the vocabulary of the language, with junk unicode;
3. random valid specs (orders 1..6, random signed permutations, random traceless pairs), whose
   plans are held to an independent reference: the dimension from the character formula of the
   group closed here (numerical rank under trace conditions), the symmetry equations and traces
   checked on the rows of Q, orthonormal rows, the irreps dimension and parity, and equivariance
   in its infinitesimal form with e3nn's own so(3) generators.

An error must be a :class:`~tsym.compiler.errors.SpecError` whose message matches
``^fuzz\\.tsym:LINE:COL: `` with the location inside the text.  Strategies 1 and 2 run with
``TSYM_MAX_BASIS_BYTES`` lowered (a mutation that drops every symmetry of a rank-6 tensor would
otherwise compile for a minute); strategy 3 instead adds symmetries to generated groups with too
many independent components (see ``_MAX_DIM``).

The default run uses 10^4 examples (6000 + 3000 + 1000).  The long run, 10^5 examples::

    TSYM_FUZZ_EXAMPLES=100000 pytest tests/compiler/test_fuzz.py
"""
from __future__ import annotations

import functools
import os
import re
import string
from unittest import mock

import numpy as np
import scipy.linalg
import torch
from e3nn import o3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tsym
from tsym.compiler.errors import SpecError, TsymError, ZeroTensorError
from tsym.compiler.library import library_names, library_path

from ..conftest import default_dtype

TOTAL = int(os.environ.get("TSYM_FUZZ_EXAMPLES", 10_000))
FILENAME = "fuzz.tsym"
LOCATED = re.compile(r"^fuzz\.tsym:(\d+):(\d+): ")
# rank 6 with 30 components (full S6 has 28); rank 5 with 90; rank 4 anything
SMALL_BASIS_BYTES = 3**6 * 30 * 12
# strategy 3: most independent components per order (cost grows ~ quadratically with them)
_MAX_DIM = {1: 3, 2: 9, 3: 27, 4: 40, 5: 30, 6: 30}


def _settings(share: float):
    return settings(
        max_examples=max(1, round(TOTAL * share)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def _small_basis_limit():
    return mock.patch.dict(os.environ, {"TSYM_MAX_BASIS_BYTES": str(SMALL_BASIS_BYTES)})


def _irreps_dim(irreps: str) -> int:
    total = 0
    for term in irreps.split("+"):
        mult, ir = term.split("x")
        total += int(mult) * (2 * int(ir[:-1]) + 1)
    return total


def compile_or_error(text: str):
    """``compile_text`` under the contract: a list of plans, or a located ``SpecError``."""
    try:
        plans = tsym.compile_text(text, FILENAME)
    except TsymError as err:
        message = str(err)
        match = LOCATED.match(message)
        assert match, f"error without a location: {type(err).__name__}: {message!r}"
        assert isinstance(err, SpecError), type(err)
        line, column = int(match[1]), int(match[2])
        lines = text.split("\n")
        assert 1 <= line <= len(lines), (line, len(lines), message)
        assert 1 <= column <= len(lines[line - 1]) + 1, (line, column, lines[line - 1], message)
        return err
    assert isinstance(plans, list) and plans
    for plan in plans:
        assert isinstance(plan, tsym.HeadPlan)
        assert plan.num_components == _irreps_dim(plan.irreps) > 0
    return plans


# --- seeds and vocabulary -----------------------------------------------------------------------
def _strip_comment_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("#"))


_LIBRARY = [library_path(name) for name in library_names()]  # the spec library (package data)
SEEDS = [_strip_comment_lines(path.read_text()) for path in _LIBRARY] + [
    "tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij; pool mean; units \"GPa\" }",
    "tensor a {\n  indices ij\n  symmetry ij = -ji\n  parity axial\n}\n"
    "tensor b { indices ijk\n symmetry ijk = jik = ikj\n traceless ij }\n",
    "# a comment\ntensor q {\n    indices   ij   # inline\n    symmetry  ij = ji\n    traceless ij\n"
    "    level     atom\n    units     \"e\\u00c5^2 \\\"x\\\"\"\n}\n",
    "tensor piezo { indices ijk; symmetry ijk = ikj; parity polar; level structure; pool sum }",
    "tensor t {\r\n\tindices\tIJK\r\n\tsymmetry IJK = -JIK\r\n}\r\n",
    "tensor s { indices ijkl; symmetry ijkl = jikl = ijlk; traceless ij; traceless kl }",
]
if _LIBRARY:  # one file with its comments, as written
    SEEDS.append(_LIBRARY[0].read_text())

KEYWORDS = ["tensor", "indices", "symmetry", "parity", "traceless", "level", "pool", "units"]
VALUES = ["polar", "axial", "atom", "structure", "sum", "mean", "polr", "atoms", "Sum"]
PUNCT = ["{", "}", "=", "-", "+", ";", "\n", "\n", "#", "# note\n", '"', "\t", "\r", "\r\n", " "]
STRINGS = ['"GPa"', '""', '"a\\"b"', '"\\u00e9"', '"\\x"', '"\\', '"tab\\t"', '"\\ud800"', '"e^2/E_h"']
JUNK = [
    "é", "∑", "\x00", "\u200b", "\ufeff", "🙂", "\u2028", "\x0b", "\x0c", "\x85", "ı", "İ", "ß", "ǅ",
    "\u212a", "ﬁ", "０", "٣", "\\", "'", "@", "$", "1x0e", "3", "_", "\x1b[0m", "\ud800",
]
INDEX_WORDS = ["i", "ij", "ji", "ijk", "ikj", "-jik", "ijkl", "klij", "ijklmn", "ii", "iJ", "ab", "xyz"]
VOCAB = KEYWORDS + VALUES + PUNCT + STRINGS + JUNK + INDEX_WORDS
_TOKEN_RE = re.compile(r'\s+|[A-Za-z_][A-Za-z0-9_]*|"[^"\n]*"?|#[^\n]*|.', re.S)
_TERM_RE = re.compile(r"(?<![A-Za-z0-9_])-?[A-Za-z]+")

words = st.one_of(
    st.sampled_from(VOCAB),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True),
    st.text(alphabet=string.ascii_letters, min_size=1, max_size=7),
    st.text(max_size=3),
)


# --- strategy 1: mutations ----------------------------------------------------------------------
def _mutate_chars(draw, text: str) -> str:
    pos = draw(st.integers(0, len(text)))
    op = draw(st.sampled_from(["insert", "delete", "replace"]))
    if op == "delete":
        return text[:pos] + text[pos + draw(st.integers(1, 4)) :]
    piece = draw(st.sampled_from(JUNK + PUNCT) | st.characters())
    return text[:pos] + piece + text[pos + (op == "replace") :]


def _mutate_tokens(draw, text: str) -> str:
    tokens = _TOKEN_RE.findall(text)
    if not tokens:
        return draw(words)
    k = draw(st.integers(0, len(tokens) - 1))
    op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
    if op == "delete":
        del tokens[k]
    elif op == "duplicate":
        tokens.insert(k, tokens[k])
    else:
        word = draw(words)
        tokens[k : k + (op == "replace")] = [word, " "] if draw(st.booleans()) else [word]
    return "".join(tokens)


def _mutate_lines(draw, text: str) -> str:
    lines = text.split("\n")
    a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["swap", "duplicate", "delete", "join"]))
    if op == "swap":
        lines[a], lines[b] = lines[b], lines[a]
    elif op == "duplicate":  # a repeated clause, or a repeated block line
        lines.insert(b, lines[a])
    elif op == "delete":
        del lines[a]
    elif a + 1 < len(lines):
        lines[a : a + 2] = [lines[a] + draw(st.sampled_from([" ", "; ", ""])) + lines[a + 1]]
    return "\n".join(lines)


def _mutate_terms(draw, text: str) -> str:
    """Change a letter of a symmetry term or of the indices, or flip a term's sign."""
    spans, offset = [], 0
    for line in text.split("\n"):
        if "symmetry" in line or "indices" in line:
            spans += [(offset + m.start(), offset + m.end()) for m in _TERM_RE.finditer(line)
                      if m.group().lstrip("-") not in KEYWORDS]
        offset += len(line) + 1
    if not spans:
        return text
    start, end = draw(st.sampled_from(spans))
    term = text[start:end]
    sign, letters = term[: len(term) - len(term.lstrip("-"))], term.lstrip("-")
    op = draw(st.sampled_from(["flip", "change", "swap"]))
    if op == "flip":
        new = letters if sign else "-" + letters
    else:
        k, j = draw(st.integers(0, len(letters) - 1)), draw(st.integers(0, len(letters) - 1))
        chars = list(letters)
        if op == "change":
            chars[k] = draw(st.sampled_from(letters + "ijklmnxA"))
        else:  # another permutation of the same letters
            chars[k], chars[j] = chars[j], chars[k]
        new = sign + "".join(chars)
    return text[:start] + new + text[end:]


_MUTATIONS = [_mutate_chars, _mutate_tokens, _mutate_lines, _mutate_terms]


@st.composite
def mutated_specs(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    if draw(st.integers(0, 9)) == 0:  # two blocks (possibly with the same name)
        text += "\n" + draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        text = draw(st.sampled_from(_MUTATIONS))(draw, text)
    return text


@_settings(0.6)
@given(mutated_specs())
@example('tensor a { indices i; units "\\ud800" }')  # a JSON escape of a lone surrogate (ASCII file)
@example('tensor a { indices i; units "\ud800" }')  # the same character written directly
def test_mutated_specs(text):
    with _small_basis_limit():
        compile_or_error(text)


# --- strategy 2: token soups --------------------------------------------------------------------
@st.composite
def token_soups(draw) -> str:
    tokens = draw(st.lists(words, max_size=40))
    seps = draw(st.lists(st.sampled_from([" ", " ", "", "\n", "; "]), min_size=len(tokens), max_size=len(tokens)))
    body = "".join(t + s for t, s in zip(tokens, seps))
    head = draw(st.sampled_from(["", "", "tensor t {", "tensor t {\n indices ij\n", "tensor {"]))
    tail = draw(st.sampled_from(["", "}", "\n}\n", "}}"]))
    return head + body + tail


@_settings(0.3)
@given(token_soups())
def test_token_soups(text):
    with _small_basis_limit():
        compile_or_error(text)


# --- strategy 3: random valid specs against an independent reference ---------------------------
Signed = tuple[tuple[int, ...], int]  # (axes, sign): T -> sign * np.transpose(T, axes)


def _relation(a: str, sa: int, b: str, sb: int) -> Signed:
    """``sa T_a = sb T_b`` as ``T = s * transpose(T, axes)`` (that is ``s * einsum(f"{b}->{a}", T)``)."""
    return tuple(b.index(ch) for ch in a), sa * sb


def _closure(n: int, gens: list[Signed]) -> set[Signed]:
    """All products of the generators (transpose twice: ``axes = g[h[k]]``)."""
    identity = (tuple(range(n)), 1)
    seen, frontier = {identity}, [identity]
    while frontier:
        new = []
        for g in frontier:
            for h in gens:
                prod = (tuple(g[0][k] for k in h[0]), g[1] * h[1])
                if prod not in seen:
                    seen.add(prod)
                    new.append(prod)
        frontier = new
    return seen


def _cycles(axes: tuple[int, ...]) -> int:
    seen, count = [False] * len(axes), 0
    for start in range(len(axes)):
        if not seen[start]:
            count += 1
            k = start
            while not seen[k]:
                seen[k] = True
                k = axes[k]
    return count


def _symmetric_dim(group: set[Signed]) -> int:
    """Dimension of the fixed space: (1/|G|) sum_g sign(g) 3^cycles(g), the trace of the average."""
    total = sum(sign * 3 ** _cycles(axes) for axes, sign in group)
    assert total % len(group) == 0
    return total // len(group)


def _allowed_dim(n: int, group: set[Signed], dim: int, pairs: list[tuple[int, int]], seed: int) -> int:
    """Dimension with trace conditions: symmetrise random tensors, rank of their traces."""
    if dim == 0 or not pairs:
        return dim
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal((dim + 3,) + (3,) * n)  # [k, 3, ..., 3]
    sym = sum(sign * np.transpose(samples, (0,) + tuple(1 + a for a in axes)) for axes, sign in group)
    traces = np.concatenate([np.trace(sym, axis1=1 + p, axis2=1 + q).reshape(dim + 3, -1) for p, q in pairs], 1)
    sv = np.linalg.svd(traces, compute_uv=False)
    scale = np.linalg.norm(sym.reshape(dim + 3, -1), 2)  # traces of zero are rounding noise
    return dim - int((sv > 1e-9 * scale).sum())


def _term(draw, idx: str) -> str:
    n = len(idx)
    chars = list(idx)
    kind = draw(st.sampled_from(["swap", "cycle", "shuffle"]))
    if kind == "swap" and n >= 2:
        a, b = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
        chars[a], chars[b] = chars[b], chars[a]
    elif kind == "cycle" and n >= 2:
        picked = sorted(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=n, unique=True)))
        for k, src in zip(picked, picked[1:] + picked[:1]):
            chars[k] = idx[src]
    else:
        chars = [idx[k] for k in draw(st.permutations(range(n)))]
    return draw(st.sampled_from(["", "", "", "-"])) + "".join(chars)


@st.composite
def valid_specs(draw):
    """A random valid spec: ``(text, indices, equations, trace pairs, expected dimension, seed)``."""
    n = draw(st.sampled_from([1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6, 6]))
    idx = "".join(draw(st.lists(st.sampled_from(string.ascii_letters), min_size=n, max_size=n, unique=True)))
    equations = []
    for _ in range(draw(st.integers(0, 3))):
        first = idx if draw(st.integers(0, 3)) else _term(draw, idx)
        equations.append([first] + [_term(draw, idx) for _ in range(draw(st.integers(1, 2)))])

    def group_of(eqs):
        gens = []
        for terms in eqs:
            signed = [(-1 if t[0] == "-" else 1, t.lstrip("-")) for t in terms]
            gens += [_relation(signed[0][1], signed[0][0], b, sb) for sb, b in signed[1:]]
        return _closure(n, gens)

    group = group_of(equations)
    dim, extra = _symmetric_dim(group), 0
    while dim > _MAX_DIM[n]:  # too slow to compile often: add a transposition
        k = (draw(st.integers(0, n - 2)) + extra) % (n - 1)
        extra += 1
        equations.append([idx, idx[:k] + idx[k + 1] + idx[k] + idx[k + 2 :]])
        group = group_of(equations)
        dim = _symmetric_dim(group)
    pairs = []
    if n >= 2:
        for _ in range(draw(st.integers(0, 2))):
            pairs.append(tuple(draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))))
    seed = draw(st.integers(0, 2**31 - 1))
    clauses = [f"indices {idx}"] + [f"symmetry {' = '.join(terms)}" for terms in equations]
    clauses += [f"traceless {idx[p]}{idx[q]}" for p, q in pairs]
    clauses.append(f"parity {draw(st.sampled_from(['polar', 'axial']))}")
    if draw(st.booleans()):
        clauses.append(f"level {draw(st.sampled_from(['atom', 'structure']))}")
        clauses.append(f"pool {draw(st.sampled_from(['sum', 'mean']))}")
    if draw(st.booleans()):
        clauses.append('units "' + draw(st.sampled_from(["GPa", "e*Angstrom", "", "\\u00c5^3", "a \\\"b\\\""])) + '"')
    clauses = draw(st.permutations(clauses))
    sep = draw(st.sampled_from(["\n    ", "; ", "\n\t", " # note\n  "]))
    name = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True) | st.sampled_from(KEYWORDS))
    text = f"tensor {name} {{{sep}{sep.join(clauses)}\n}}\n"
    return text, idx, equations, pairs, _allowed_dim(n, group, dim, pairs, seed), seed


@_settings(0.1)
@given(valid_specs())
def test_valid_specs(case):
    text, idx, equations, pairs, expected, seed = case
    result = compile_or_error(text)
    if expected == 0:
        assert isinstance(result, ZeroTensorError), result
        return
    assert not isinstance(result, Exception), result
    (plan,) = result
    n, dim = len(idx), expected
    assert plan.num_components == dim and plan.indices == idx
    parity = "o" if (n % 2 == 1) != (plan.parity == "axial") else "e"
    assert {term[-1] for term in plan.irreps.split("+")} == {parity}, plan.irreps
    q = plan.change_of_basis.numpy()  # [dim, 3, ..., 3]
    assert q.shape == (dim,) + (3,) * n and q.dtype == np.float64
    flat = q.reshape(dim, -1)
    assert np.abs(flat @ flat.T - np.eye(dim)).max() < 1e-12
    for terms in equations:
        a, sa = terms[0].lstrip("-"), -1 if terms[0][0] == "-" else 1
        for term in terms[1:]:
            axes, sign = _relation(a, sa, term.lstrip("-"), -1 if term[0] == "-" else 1)
            assert np.abs(q - sign * np.transpose(q, (0,) + tuple(1 + k for k in axes))).max() < 1e-12
    for p, r in pairs:
        assert np.abs(np.trace(q, axis1=1 + p, axis2=1 + r)).max() < 1e-12
    # equivariance, infinitesimally: sum over slots of Q x_k X1_a = X_l(a) Q, with e3nn's generators
    x1 = _e3nn_generators(1)  # [3, 3, 3]: the Cartesian rotation generators (l=1 is x, y, z)
    xl = _block_generators(plan.irreps)  # [3, dim, dim]
    for a in range(3):
        lhs = sum(np.moveaxis(np.tensordot(q, x1[a], axes=([1 + k], [0])), -1, 1 + k) for k in range(n))
        assert np.abs(lhs - np.tensordot(xl[a], q, axes=([1], [0]))).max() < 1e-11


@functools.lru_cache(maxsize=None)
def _e3nn_generators(l: int) -> np.ndarray:
    with default_dtype(torch.float64):  # e3nn builds them in the default dtype
        return o3.so3_generators(l).numpy()


def _block_generators(irreps: str) -> np.ndarray:
    """``[3, dim, dim]``: e3nn's generators of each irrep copy, block-diagonal in Q's row order."""
    blocks = [_e3nn_generators(ir.l) for mul, ir in o3.Irreps(irreps) for _ in range(mul)]
    return np.stack([scipy.linalg.block_diag(*(block[a] for block in blocks)) for a in range(3)])


def test_e3nn_l1_generators_are_the_cartesian_ones():
    """The reference above needs e3nn's l=1 in (x, y, z) order: (X_a)_bc = -eps_abc."""
    eps = np.zeros((3, 3, 3))
    for (a, b, c), sign in {(0, 1, 2): 1, (1, 2, 0): 1, (2, 0, 1): 1}.items():
        eps[a, b, c], eps[a, c, b] = sign, -sign
    np.testing.assert_allclose(_e3nn_generators(1), -eps, atol=1e-15)
