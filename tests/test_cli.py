"""The command line: help texts and exit codes that need no model."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "whisperpool.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("command", ["transcribe", "serve", "load", "bench"])
def test_every_subcommand_explains_its_options(command):
    proc = run(command, "--help")
    assert proc.returncode == 0 and "--" in proc.stdout
    top = run("--help")
    assert command in top.stdout and "warm" in top.stdout


def test_a_missing_model_is_exit_code_3_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    for args in (["serve", "--port", "0"], ["transcribe", "--no-progress", "x.wav"]):
        proc = run(*args, "--model", str(missing))
        assert proc.returncode == 3, proc.stderr
        assert "model folder does not exist" in proc.stderr and "no-such-model" in proc.stderr


def test_bad_settings_are_exit_code_2():
    assert run("transcribe", "--workers", "0", "x.wav").returncode == 2
    proc = run("serve", "--port", "70000")
    assert proc.returncode == 2 and "port" in proc.stderr
    assert run().returncode == 2
