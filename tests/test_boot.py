"""Workers boot in a fresh interpreter: no caller's main module is imported again.

A script without ``if __name__ == "__main__":``, a script on standard input and a
notebook-style cell (code compiled from a pseudo file name and run in ``__main__``)
all start a pool; a worker that cannot boot says why, with the last lines it printed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import WAIT, clip, fake_config
from whisperpool import PoolFailed, WorkerState

FAKE_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from whisperpool import PoolConfig, TranscriptionEngine

    config = PoolConfig(backend="fake", model="fake", pool_size=2, warmup_timeout_s=20.0)
    with TranscriptionEngine(config) as engine:
        result = engine.transcribe_sync(np.zeros(16000, np.float32))
        print("TEXT:", result.text, "WORKER:", result.worker_id)
    """
)


def run_python(args: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=2 * WAIT, check=False
    )


def test_an_unguarded_script_starts_a_pool(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(FAKE_SCRIPT)
    done = run_python([str(script)])
    assert done.returncode == 0, done.stderr
    assert "TEXT: 16000 samples" in done.stdout
    assert done.stdout.count("TEXT:") == 1  # the workers did not run the script again


def test_a_script_on_standard_input_starts_a_pool():
    done = run_python(["-"], stdin=FAKE_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert "TEXT: 16000 samples" in done.stdout


def test_a_notebook_cell_starts_a_pool():
    # What a Jupyter kernel does with a cell: compile it under a pseudo file name and
    # run it in the interactive namespace of __main__, which has no file to re-import.
    cell = f"exec(compile({FAKE_SCRIPT!r}, '<ipython-input-1-5f3c>', 'exec'), globals())"
    done = run_python(["-c", cell])
    assert done.returncode == 0, done.stderr
    assert "TEXT: 16000 samples" in done.stdout


def test_a_worker_that_cannot_boot_reports_its_last_output(make_pool, tmp_path, monkeypatch):
    # Every new interpreter with this PYTHONPATH prints a reason and exits before the
    # worker code runs: as a broken environment (a bad install, a failing import) would.
    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\nprint('first line', file=sys.stderr)\n"
        "print('cannot boot: the environment is broken on purpose', file=sys.stderr, flush=True)\nos._exit(7)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    pool = make_pool(fake_config(pool_size=1, max_restarts=0))
    with pytest.raises(PoolFailed) as info:
        pool.warm_up_all_workers(timeout=WAIT)
    message = str(info.value)
    assert "exit code 7" in message and "cannot boot: the environment is broken on purpose" in message
    (worker,) = pool.get_status().workers
    assert worker.state is WorkerState.FAILED
    assert worker.output[-1] == "cannot boot: the environment is broken on purpose"
    assert "cannot boot" in (worker.error or "")


@pytest.mark.real_model
def test_an_unguarded_script_on_standard_input_transcribes_real_speech(clip_texts):
    script = textwrap.dedent(
        f"""
        from whisperpool import TranscriptionEngine
        engine = TranscriptionEngine(pool_size=1)
        engine.start_sync()
        print("TEXT:", engine.transcribe_sync({str(clip("fox"))!r}, language="en").text)
        engine.close_sync()
        """
    )
    done = run_python(["-"], stdin=script)
    assert done.returncode == 0, done.stderr
    text = done.stdout.split("TEXT:", 1)[1].lower()
    assert "fox" in text and "dog" in text
