"""Extended XYZ read frame by frame, so that a bad frame is named and the others still read.

ASE reads a whole file or nothing: a truncated last frame or one frame whose atom count is wrong
makes ``ase.io.read(path, ":")`` fail with no frame number.  :func:`read_frames` reads the file
with ASE when it can (one call, fast); when ASE fails it walks the frames itself (a line holding
one integer starts a frame; that many atom lines follow the comment line) and parses each frame
alone, so the error names the frame (0-based, in file order, the ``record N`` of data errors) and
the frames before and after it are kept.

>>> import tempfile, os
>>> text = "1\\nProperties=species:S:1:pos:R:3\\nH 0 0 0\\n2\\n\\nH 0 0 0\\n1\\n\\nH 0 0 1\\n"
>>> path = os.path.join(tempfile.mkdtemp(), "bad.extxyz"); _ = open(path, "w").write(text)
>>> frames, bad = read_frames(path)
>>> [k for k, _ in frames], bad[0][0], bad[0][1].split(":")[0]
([0, 2], 1, 'the header (line 4) says 2 atoms but the frame has 1 atom line')
"""
from __future__ import annotations

import io
from collections.abc import Iterator

import ase.io
from ase import Atoms

__all__ = ["read_frames", "iter_frames", "unreadable_reason"]

#: the first bytes of compressed files, and the command that decompresses each
_MAGIC = {b"\x1f\x8b": ("gzip", "gunzip -c"), b"BZh": ("bzip2", "bunzip2 -c"),
          b"\xfd7zXZ\x00": ("xz", "unxz -c"), b"PK\x03\x04": ("zip", "unzip -p")}


def unreadable_reason(path: str) -> tuple[str, str] | None:
    """``(why, hint)`` when the file at ``path`` is plainly not extended XYZ text (compressed,
    or empty), else None; an unreadable path is left to the reader's own error."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if not head:
        return ("the file is empty (no structures)",
                "give a file with structures (write them with ase.io.write(path, frames))")
    for magic, (kind, command) in _MAGIC.items():
        if head.startswith(magic):
            return (f"the file is {kind}-compressed, not extended XYZ text",
                    f"decompress it first: {command} {path} > decompressed.extxyz")
    return None


def _count(line: str) -> int | None:
    """The atom count if ``line`` is a frame header (one non-negative integer), else None."""
    parts = line.split()
    if len(parts) != 1:
        return None
    try:
        n = int(parts[0])
    except ValueError:
        return None
    return n if n >= 0 else None


def _parse(block: list[str]):
    return ase.io.read(io.StringIO("".join(block)), index=0, format="extxyz")


def _walk(lines: list[str]) -> tuple[list, list[tuple[int, str]]]:
    """Frames ``[(index, Atoms)]`` and bad frames ``[(index, message)]`` of the lines."""
    frames, bad = [], []
    p, k, total = 0, 0, len(lines)

    def resync(start: int) -> int:  # the next line that can start a frame
        q = start
        while q < total and _count(lines[q]) is None:
            q += 1
        return q

    while p < total:
        if not lines[p].strip():
            p += 1
            continue
        n = _count(lines[p])
        if n is None:
            q = resync(p + 1)
            bad.append((k, f"line {p + 1} should start a frame with its atom count, but holds "
                           f"{lines[p].strip()[:40]!r} ({q - p} lines skipped up to the next "
                           "frame)"))
            k, p = k + 1, q
            continue
        end = p + 2 + n
        inner = next((q for q in range(p + 2, min(end, total)) if _count(lines[q]) is not None),
                     None)
        if inner is not None:
            bad.append((k, f"the header (line {p + 1}) says {n} atoms but the frame has "
                           f"{inner - p - 2} atom line{'s' if inner - p - 2 != 1 else ''}: line "
                           f"{inner + 1} starts the next frame"))
            k, p = k + 1, inner
            continue
        if end > total:
            have = max(total - p - 2, 0)
            bad.append((k, f"the frame is truncated: the header (line {p + 1}) says {n} atoms, "
                           f"the file ends after {have}"))
            break
        if end < total and lines[end].strip() and _count(lines[end]) is None:
            q = resync(end)
            bad.append((k, f"the header (line {p + 1}) says {n} atoms but atom lines go on after "
                           f"them (lines {end + 1}..{q})"))
            k, p = k + 1, q
            continue
        try:
            frames.append((k, _parse(lines[p:end])))
        except Exception as err:  # ASE raises many kinds; each means "this frame is bad"
            bad.append((k, f"cannot read the frame at line {p + 1} ({type(err).__name__}: "
                           f"{err})"))
        k, p = k + 1, end
    return frames, bad


def read_frames(path: str) -> tuple[list, list[tuple[int, str]]]:
    """Read an extended XYZ file: ``([(frame index, Atoms)], [(frame index, message)])``.

    The second list names each frame that cannot be read (truncated, an atom count that does
    not match its atom lines, a line ASE cannot parse); the first holds every other frame.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError
        The file cannot be opened or is not text.
    """
    try:
        return list(enumerate(ase.io.read(path, index=":", format="extxyz"))), []
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        raise  # ASE's XYZError is an OSError too: only these mean the file itself is unreadable
    except Exception:  # noqa: BLE001 - locate the bad frame below
        pass
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    return _walk(lines)

def iter_frames(f) -> Iterator[Atoms]:
    """Frames of an open (ext)xyz file, one at a time, each parsed on its own: nothing is kept
    between frames, so memory stays flat however long the file (``ase.io.iread`` first indexes
    every frame).  A broken frame raises ``ValueError``; :func:`read_frames` locates them all."""
    while (line := f.readline()).strip():
        try:
            natoms = int(line)
        except ValueError:
            raise ValueError(f"expected the number of atoms, got {line.strip()[:40]!r}") from None
        lines = [line] + [f.readline() for _ in range(natoms + 1)]
        while True:  # old-style cell vectors (VEC1..VEC3) after the atoms
            pos = f.tell()
            extra = f.readline()
            if not extra.lstrip().startswith("VEC"):
                f.seek(pos)
                break
            lines.append(extra)
        if not all(lines):
            raise ValueError(f"the frame is truncated: the file ends inside its {natoms} atoms")
        yield ase.io.read(io.StringIO("".join(lines)), format="extxyz")
