"""Ordinary mistakes on the command line end with exit 2 and one message naming what is wrong.

Each case once ended as ``tsym: internal error (...)`` (exit 70) or was silently accepted.  The
checks: the exit status is 2, the message names the file, key or value, and it is not an internal
error.  Argument mistakes (``--batch-size 0``) are argparse's (usage line, then the error).
"""
from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from tests.runtime.training.test_train import train_tiny_run
import tsym.cli as cli
from tsym.cli import main
from tsym.runtime.model import checkpoint
from tsym.runtime.data.convert import convert
from tsym.runtime.errors import DataError
from tsym.runtime.training import guard

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny labelled data set, its training config, and a trained run (2 steps)."""
    root = tmp_path_factory.mktemp("mistakes")
    cfg = train_tiny_run(root)
    return root, cfg


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err


def expect_user_error(argv, capsys, pattern: str) -> str:
    code, err = run(argv, capsys)
    assert "internal error" not in err, err
    assert code == 2, err
    assert re.search(pattern, err), err
    return err


def write_config(root, cfg, name, edit=None, text=None):
    path = root / f"{name}.yaml"
    if text is None:
        cfg = json.loads(json.dumps(cfg))
        edit(cfg)
        text = yaml.safe_dump(cfg)
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return path


# ----------------------------------------------------------------------- training configurations
CONFIG_CASES = {
    "negative seed": (lambda c: c["training"].update(seed=-1),
                      r"cfg_negative seed\.yaml: section 'training': 'seed' must be an integer "
                      r"in \[0, 2\*\*63 - 1\], got -1"),
    "huge seed": (lambda c: c["training"].update(seed=2**64),
                  r"'seed' must be an integer in \[0, 2\*\*63 - 1\], got 18446744073709551616"),
    "negative split seed": (lambda c: c["data"].update(split_seed=-3),
                            r"section 'data': 'split_seed' must be .*got -3"),
    "bad irreps": (lambda c: c["model"]["backbone_kwargs"].update(irreps="8x0e+garbage"),
                   r"XPaiNN: field 'irreps' is not an e3nn irreps string: '8x0e\+garbage'"),
    "text num_scalars": (lambda c: c["model"]["backbone_kwargs"].update(num_scalars="many"),
                         r"backbone 'xpainn': bad backbone_kwargs .*'many'"),
    "betas with text": (lambda c: c["optimiser"].update(betas=["a", 0.9]),
                        r"section 'optimiser': 'betas' must be two numbers in \[0, 1\), got "
                        r"\['a', 0.9\]"),
    "nested betas": (lambda c: c["optimiser"].update(betas=[[0.9], 0.9]),
                     r"'betas' must be two numbers"),
    "infinite grad_clip": (lambda c: c["training"].update(grad_clip=float("inf")),
                           r"section 'training': 'grad_clip' must be a finite number, got inf"),
    "nan lr": (lambda c: c["optimiser"].update(lr=float("nan")),
               r"section 'optimiser': 'lr' must be a finite number, got nan"),
    "warm-up longer than the run": (
        lambda c: c["schedule"].update(warmup_steps=10**12),
        r"schedule\.warmup_steps is 1000000000000, more than the run's 2 optimiser steps"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_mistake(base, tmp_path, capsys, case):
    root, cfg = base
    edit, pattern = CONFIG_CASES[case]
    path = write_config(tmp_path, cfg, f"cfg_{case}", edit)
    expect_user_error(["train", path, "--run-dir", tmp_path / "run"], capsys, pattern)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_binary_config(base, tmp_path, capsys):
    path = write_config(tmp_path, None, "binary", text=bytes(range(256)) * 4)
    expect_user_error(["train", path], capsys,
                      r"binary\.yaml: not a YAML text file \(byte 128 is not UTF-8\)")


@pytest.mark.parametrize("where", ["section", "key"])
def test_duplicate_yaml_keys_are_refused(base, tmp_path, capsys, where):
    """PyYAML keeps the last of two equal keys; a config must not lose the first silently."""
    root, cfg = base
    text = yaml.safe_dump(cfg)
    if where == "section":
        text += "training:\n  max_steps: 1\n"
        pattern = r"dup\.yaml:\d+:1: not valid YAML \(key 'training' is given twice"
    else:
        text = text.replace("training:\n", "training:\n  seed: 1\n  seed: 2\n")
        pattern = r"dup\.yaml:\d+:3: not valid YAML \(key 'seed' is given twice"
    path = write_config(tmp_path, None, "dup", text=text)
    expect_user_error(["train", path, "--run-dir", tmp_path / "run"], capsys, pattern)


@pytest.mark.parametrize("value", ["-1", "0"])
def test_stop_after_must_be_positive(base, tmp_path, capsys, value):
    root, _ = base
    expect_user_error(["train", root / "cfg.yaml", "--run-dir", tmp_path / "run",
                       "--stop-after", value], capsys,
                      rf"argument --stop-after: expected an integer >= 1, got '{value}'")


# ---------------------------------------------------------------------------- run directories
def test_run_dir_below_a_file(base, tmp_path, capsys):
    root, _ = base
    (tmp_path / "file").write_text("")
    expect_user_error(["train", root / "cfg.yaml", "--run-dir", tmp_path / "file" / "run"], capsys,
                      r"file/run: cannot use this run directory \(Not a directory\)")


def test_read_only_run_dir(base, tmp_path, capsys, monkeypatch):
    """A folder where the lock file cannot be created (read-only; simulated: root writes
    anywhere)."""
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(guard.os, "open", refuse)
    root, _ = base
    expect_user_error(["train", root / "cfg.yaml", "--run-dir", tmp_path / "ro"], capsys,
                      r"ro: cannot use this run directory \(Permission denied\)")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes in read-only folders")
def test_read_only_run_dir_for_real(base, tmp_path, capsys):
    root, _ = base
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        expect_user_error(["train", root / "cfg.yaml", "--run-dir", tmp_path / "ro"], capsys,
                          r"ro: cannot use this run directory \(Permission denied\)")
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_full_disk(base, tmp_path, capsys, monkeypatch):
    """torch's writer reports a short write (ENOSPC) as a RuntimeError; it becomes a message
    naming the checkpoint (simulated: a real full disk needs a small file system)."""
    def short_write(obj, f, *args, **kwargs):
        f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 2")

    monkeypatch.setattr(checkpoint.torch, "save", short_write)
    root, _ = base
    expect_user_error(["train", root / "cfg.yaml", "--run-dir", tmp_path / "full"], capsys,
                      r"full/(best|last)\.pt: writing failed \(a short write; \d+ bytes free")
    assert not [p for p in (tmp_path / "full").iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------ other commands
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_batch_size_zero(base, tmp_path, capsys, command):
    root, _ = base
    extra = ["-o", tmp_path / "out.extxyz"] if command == "predict" else []
    expect_user_error([command, root / "run", root / "d.extxyz", "--batch-size", "0", *extra],
                      capsys, r"argument --batch-size: expected an integer >= 1, got '0'")


@pytest.mark.parametrize("command", ["predict", "export", "convert"])
def test_missing_output_folder(base, tmp_path, capsys, command):
    root, _ = base
    out = tmp_path / "no" / "such" / "out.extxyz"
    argv = {"predict": ["predict", root / "run", root / "d.extxyz", "-o", out],
            "export": ["export", root / "run", "-o", out],
            "convert": ["data", "convert", "qm9_alpha_slice", root / "d.extxyz", "-o", out]}
    expect_user_error(argv[command], capsys,
                      rf"{re.escape(str(out))}: cannot write the output file: the folder "
                      rf"{re.escape(str(out.parent))} does not exist")
    assert not out.parent.exists()


def test_unknown_converter_option(base, tmp_path, capsys):
    root, _ = base
    expect_user_error(["data", "convert", "qm9_alpha_slice", root / "d.extxyz", "-o",
                       tmp_path / "o.extxyz", "--set", "bogus=1"], capsys,
                      r"d\.extxyz: qm9_alpha_slice has no option 'bogus' \(options: limit, "
                      r"min_sign_margin\)")


@pytest.mark.parametrize("value", ["-1", "0"])
def test_convert_limit_must_be_positive(base, tmp_path, capsys, value):
    """``--limit -1`` used to drop the last structure (a Python slice ``[:-1]``)."""
    root, _ = base
    expect_user_error(["data", "convert", "qm9_alpha_slice", root / "d.extxyz", "-o",
                       tmp_path / "o.extxyz", "--limit", value], capsys,
                      rf"argument --limit: expected an integer >= 1, got '{value}'")


def test_convert_limit_in_python(base):
    root, _ = base
    with pytest.raises(DataError, match=r"d\.extxyz: limit must be an integer >= 1, got -1"):
        convert("qm9_alpha_slice", root / "d.extxyz", limit=-1)


WRONG_FORMAT = {  # converter, file content, what the message says
    "nmr_shiftml_s546": ("not a zip\n", r"cannot convert as nmr_shiftml_s546 \(BadZipFile"),
    "elastic_matten": ("[1, 2]\n", r"cannot convert as elastic_matten \(AttributeError"),
    "nmr_si_matten": ('{"a": 1}\n', r"cannot convert as nmr_si_matten \(TypeError"),
    "abo3_piezo": ('{"a": 1}\n', r"cannot convert as abo3_piezo \(UnknownFileTypeError"),
}


@pytest.mark.parametrize("kind", list(WRONG_FORMAT))
def test_convert_wrong_format(tmp_path, capsys, kind):
    content, pattern = WRONG_FORMAT[kind]
    src = tmp_path / "source.json"
    src.write_text(content)
    expect_user_error(["data", "convert", kind, src, "-o", tmp_path / "o.extxyz"], capsys,
                      rf"source\.json: {pattern}")


def test_convert_that_writes_nothing_fails(base, tmp_path, capsys):
    """Molecules without eps/becs, converted as becs_epsilon_e3nn: every entry is dropped."""
    root, _ = base
    out = tmp_path / "o.extxyz"
    expect_user_error(["data", "convert", "becs_epsilon_e3nn", root / "d.extxyz", "-o", out],
                      capsys, r"d\.extxyz: no structure converted as becs_epsilon_e3nn: read 12 "
                      r"entries, dropped 12 missing eps or becs")
    assert not out.exists()


def test_os_errors_become_user_errors(capsys, monkeypatch):
    """The last net: an OSError the commands do not foresee names its file, exit 2."""
    def fail(args):
        raise OSError(28, "No space left on device", "/somewhere/out.extxyz")

    monkeypatch.setattr(cli, "cmd_table", fail)
    code, err = run(["table"], capsys)
    assert code == 2 and err.strip() == "/somewhere/out.extxyz: No space left on device"
