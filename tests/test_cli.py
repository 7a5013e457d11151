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


# -- how flags and WHISPERPOOL_* variables end in the settings -------------------------------


def parse(*argv: str):
    from whisperpool.cli import build_parser

    return build_parser().parse_args(argv)


def test_transcribe_flags_map_to_the_pool_config():
    from whisperpool.cli import transcribe_config

    args = parse(
        "transcribe", "a.wav", "--model", "/models/tiny", "--workers", "3", "--threads", "2", "--compute-type",
        "float32", "--timeout", "12.5", "--language", "de", "--beam-size", "5", "--task", "translate",
        "--initial-prompt", "Hallo", "--word-timestamps", "--vad-filter", "--window", "full",
    )  # fmt: skip
    config = transcribe_config(args)
    assert (config.model, config.pool_size, config.threads_per_worker) == ("/models/tiny", 3, 2)
    assert (config.compute_type, config.device, config.request_timeout_s) == ("float32", "cpu", 12.5)
    d = config.decode
    assert (d.language, d.beam_size, d.task, d.initial_prompt) == ("de", 5, "translate", "Hallo")
    assert (d.word_timestamps, d.vad_filter, d.window) == (True, True, "full")
    plain = transcribe_config(parse("transcribe", "a.wav")).decode
    assert (plain.language, plain.window, plain.word_timestamps) == (None, "auto", False)


@pytest.mark.parametrize("json_output", [False, True])
def test_transcribe_asks_for_segment_times_only_when_it_prints_them(tmp_path, monkeypatch, capsys, json_output):
    import asyncio
    import io

    import numpy as np
    from rich.console import Console

    from conftest import encode, fake_config
    from whisperpool.cli import transcribe as cli
    from whisperpool.engine import TranscriptionEngine

    path = encode(np.zeros(8000, np.float32), tmp_path / "a.wav")
    monkeypatch.setattr(cli, "transcribe_config", lambda args: fake_config(pool_size=1))
    asked, real = [], TranscriptionEngine.transcribe

    async def noting(self, audio, **kwargs):
        asked.append(kwargs.get("segment_timestamps"))
        return await real(self, audio, **kwargs)

    monkeypatch.setattr(TranscriptionEngine, "transcribe", noting)
    args = parse("transcribe", "--no-progress", str(path), *(["--json"] if json_output else []))
    quiet = Console(file=io.StringIO())
    assert asyncio.run(cli._transcribe(args, quiet, quiet)) == 0
    assert asked == [json_output]
    assert ('"segments"' in capsys.readouterr().out) == json_output


def test_bench_accuracy_runs_one_half_of_the_dev_set_when_asked():
    from whisperpool.cli import bench_options

    assert bench_options(parse("bench", "--accuracy")).splits == ("held-out", "tune")
    held = bench_options(parse("bench", "--accuracy", "--split", "held-out", "--stream-splits", "both"))
    assert (held.splits, held.stream_splits) == (("held-out",), ("held-out", "tune"))
    assert bench_options(parse("bench", "--accuracy", "--split", "tune")).splits == ("tune",)
    with pytest.raises(SystemExit):
        parse("bench", "--accuracy", "--split", "train")


def test_serve_flags_win_over_environment_variables_and_both_reach_the_settings():
    from whisperpool.cli import serve_settings

    environ = {
        "WHISPERPOOL_PORT": "9000",
        "WHISPERPOOL_WORKERS": "4",
        "WHISPERPOOL_LANGUAGE": "de",
        "WHISPERPOOL_API_KEY": "from-env",
        "WHISPERPOOL_EXTRA_MODELS": "f32=base:float32:1",
        "WHISPERPOOL_MAX_QUEUE": "7",
        "WHISPERPOOL_MAX_AUDIO_S": "60",
    }
    args = parse(
        "serve", "--port", "8123", "--host", "0.0.0.0", "--max-upload-mb", "5", "--grace", "3", "--model", "/m",
        "--threads", "2", "--compute-type", "float32", "--timeout", "9", "--window", "full", "--wyoming-port",
        "10301", "--min-workers", "1", "--max-workers", "3", "--state-file", "/tmp/s.json",
    )  # fmt: skip
    settings = serve_settings(args, environ)
    assert (settings.port, settings.host, settings.api_key) == (8123, "0.0.0.0", "from-env")
    assert (settings.max_upload_mb, settings.grace_s, settings.wyoming_port, settings.http) == (5, 3, 10301, True)
    pool = settings.pool
    assert (pool.model, pool.pool_size, pool.threads_per_worker, pool.compute_type) == ("/m", 4, 2, "float32")
    assert (pool.request_timeout_s, pool.max_queue, pool.min_workers, pool.max_workers) == (9, 7, 1, 3)
    assert pool.state_file == "/tmp/s.json" and pool.max_audio_s == 60
    assert serve_settings(parse("serve", "--max-audio-s", "90"), environ).pool.max_audio_s == 90
    assert serve_settings(parse("serve", "--max-batch", "4"), environ).pool.max_batch == 4
    assert serve_settings(parse("serve"), {"WHISPERPOOL_MAX_BATCH": "3"}).pool.max_batch == 3
    assert (pool.decode.language, pool.decode.window) == ("de", "full")
    assert settings.models["f32"].compute_type == "float32" and settings.models["f32"].pool_size == 1
    assert settings.served_model == "/m"


def test_the_backend_flag_reaches_transcribe_serve_and_the_extra_model_form():
    from whisperpool.cli import serve_settings, transcribe_config

    assert transcribe_config(parse("transcribe", "a.wav")).backend == "faster-whisper"
    assert transcribe_config(parse("transcribe", "a.wav", "--backend", "whispercpp")).backend == "whispercpp"
    settings = serve_settings(
        parse("serve", "--backend", "whispercpp", "--extra-model", "fw=base::1:faster-whisper"),
        {"WHISPERPOOL_EXTRA_MODELS": "ignored=base"},
    )
    assert (settings.pool.backend, settings.models["fw"].backend, settings.models["fw"].pool_size) == (
        "whispercpp",
        "faster-whisper",
        1,
    )
    assert serve_settings(parse("serve"), {"WHISPERPOOL_BACKEND": "whispercpp"}).pool.backend == "whispercpp"
    with pytest.raises(SystemExit):
        parse("transcribe", "a.wav", "--backend", "whisper")


def test_serve_without_flags_or_variables_gets_the_one_table_of_defaults():
    from whisperpool.cli import serve_settings
    from whisperpool.server.settings import DEFAULTS

    settings = serve_settings(parse("serve"), {})
    assert settings == DEFAULTS
    assert (settings.host, settings.port, settings.pool.max_queue, settings.wyoming_port) == (
        "127.0.0.1",
        8000,
        64,
        None,
    )


def test_wyoming_flags_map_to_a_wyoming_only_server():
    from whisperpool.cli import serve_settings

    args = parse("wyoming", "--port", "10301", "--model", "/m", "--workers", "1", "--language", "en", "--host", "::1")
    settings = serve_settings(args, {"WHISPERPOOL_WORKERS": "3", "WHISPERPOOL_COMPUTE_TYPE": "float32"})
    assert (settings.http, settings.wyoming_port, settings.wyoming_host) == (False, 10301, "::1")
    assert (settings.pool.model, settings.pool.pool_size, settings.pool.compute_type) == ("/m", 1, "float32")
    assert settings.pool.decode.language == "en"
    assert serve_settings(parse("wyoming"), {}).wyoming_port == 10300
    # express workers: the flag, else the variable, else the pool's default (None: decided by the layout)
    assert serve_settings(parse("wyoming", "--express-workers", "2"), {}).pool.express_workers == 2
    assert serve_settings(parse("wyoming"), {"WHISPERPOOL_EXPRESS_WORKERS": "0"}).pool.express_workers == 0
    assert serve_settings(parse("wyoming"), {}).pool.express_workers is None
    with pytest.raises(SystemExit):
        parse("wyoming", "--express-workers", "-1")


def test_stream_and_load_flags():
    from whisperpool.cli import stream_config
    from whisperpool.server.settings import DEFAULTS

    config = stream_config(parse("stream", "a.wav", "--workers", "1", "--threads", "2", "--language", "en"))
    assert (config.pool_size, config.threads_per_worker, config.model, config.decode.language) == (1, 2, "base", "en")
    load = parse("load", "--requests", "10", "--concurrency", "2", "--workers", "1")
    assert (load.requests, load.concurrency, load.workers, load.max_queue) == (10, 2, 1, DEFAULTS.pool.max_queue)


# the engine flags every command that runs a pool shares, spelled as each spells its workers
_ENGINE_FLAGS = ["--model", "base-q8_0", "--backend", "whispercpp", "--threads", "2", "--language", "en"]
_WORKERS = {
    ("transcribe", "a.wav"): "--workers",
    ("stream", "a.wav"): "--workers",
    ("serve",): "--workers",
    ("wyoming",): "--workers",
    ("ray", "transcribe", "a.wav", "-o", "o.jsonl"): "--workers-per-actor",
    ("ray", "serve"): "--workers-per-replica",
}


def engine_config(command: tuple[str, ...], *flags: str):
    """The PoolConfig a command builds from its flags (no WHISPERPOOL_* variables)."""
    from whisperpool.cli import batch_config, serve_settings, stream_config, transcribe_config
    from whisperpool.cli.ray_serve import ray_serve_settings

    args = parse(*command, *flags)
    build = {
        "transcribe": transcribe_config,
        "stream": stream_config,
        "serve": lambda a: serve_settings(a, {}).pool,
        "wyoming": lambda a: serve_settings(a, {}).pool,
    }
    if command[0] == "ray":
        build = {"transcribe": lambda a: batch_config(a).pool, "serve": lambda a: ray_serve_settings(a, {}).server.pool}
        return build[command[1]](args)
    return build[command[0]](args)


def test_the_same_engine_flags_give_the_same_pool_on_every_command():
    import dataclasses

    configs = {
        " ".join(command[:2]): engine_config(command, *_ENGINE_FLAGS, workers, "3")
        for command, workers in _WORKERS.items()
    }
    # the server's queue limit is its own (a client retries a 503), and so are express workers
    # (one caller of transcribe or stream waits for every result; Ray reserves CPUs per
    # worker): everything the flags say is the same
    assert {name: c.express_workers for name, c in configs.items() if c.express_workers is not None} == {
        "transcribe a.wav": 0,
        "stream a.wav": 0,
        "ray transcribe": 0,
    }
    normal = {name: dataclasses.replace(c, max_queue=None, express_workers=None) for name, c in configs.items()}
    first = normal["transcribe a.wav"]
    assert (first.backend, first.model, first.pool_size, first.threads_per_worker) == ("whispercpp", "base-q8_0", 3, 2)
    assert first.decode.language == "en"
    for name, config in normal.items():
        assert config == first, name
    # flags the serving and batch commands share with transcribe reach their pools alike
    more = ["--compute-type", "float32", "--window", "full"]
    pools = [
        engine_config(c, *more) for c in (("transcribe", "a.wav"), ("serve",), ("ray", "transcribe", "a", "-o", "o"))
    ]
    assert {(p.compute_type, p.decode.window) for p in pools} == {("float32", "full")}


def test_without_engine_flags_each_command_keeps_its_own_defaults():
    assert engine_config(("transcribe", "a.wav")).backend == "faster-whisper"
    assert engine_config(("ray", "serve")).backend == "faster-whisper"
    actor = engine_config(("ray", "transcribe", "a.wav", "-o", "o.jsonl"))
    assert (actor.pool_size, actor.threads_per_worker, actor.backend) == (1, 1, "faster-whisper")
    assert engine_config(("ray", "serve")).max_queue == 64  # the server's table
    with pytest.raises(SystemExit):
        parse("ray", "transcribe", "a.wav", "-o", "o.jsonl", "--backend", "whisper")


# -- the server extra ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["wyoming", "--port", "0"], ["load", "--requests", "1"]])
def test_server_commands_without_the_server_extra_name_it_and_exit_2(command, monkeypatch, capsys):
    from whisperpool.cli import main

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "wyoming", None)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "pip install 'whisperpool[server]'" in err and "fastapi" in err and "wyoming" in err


def test_ray_serve_without_the_ray_extra_names_it_and_exits_2(monkeypatch, capsys):
    from whisperpool.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert main(["ray", "serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'whisperpool[ray]'" in err and "missing: ray" in err


def test_the_library_and_cli_import_without_the_server_extra():
    code = (
        "import sys\n"
        "for m in ('fastapi', 'uvicorn', 'starlette', 'prometheus_client', 'wyoming', 'websockets', 'python_multipart'):\n"
        "    sys.modules[m] = None\n"
        "import whisperpool, whisperpool.cli, whisperpool.server, whisperpool.remote\n"
        "whisperpool.cli.build_parser().parse_args(['serve', '--help'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--port" in proc.stdout


def test_stream_limit_flags_and_variables_reach_the_settings():
    from whisperpool.cli import serve_settings

    args = parse(
        "serve", "--stream-max-sessions", "4", "--stream-max-sessions-per-client", "2", "--stream-idle-timeout-s", "9",
        "--stream-max-audio-rate", "2", "--stream-audio-burst-s", "5", "--stream-max-buffered-s", "12",
        "--allowed-origin", "https://a.example", "--allowed-origin", "https://b.example",
        "--wyoming-port", "10301", "--wyoming-host", "0.0.0.0", "--wyoming-insecure", "--api-key", "k",
    )  # fmt: skip
    settings = serve_settings(args, {"WHISPERPOOL_STREAM_MAX_SESSIONS": "99"})
    s = settings.streams
    assert (s.max_sessions, s.max_sessions_per_client, s.idle_timeout_s) == (4, 2, 9.0)
    assert (s.max_audio_rate, s.audio_burst_s, s.max_buffered_s) == (2.0, 5.0, 12.0)
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert (settings.wyoming_host, settings.wyoming_insecure) == ("0.0.0.0", True)
    environ = {"WHISPERPOOL_STREAM_MAX_SESSIONS": "99", "WHISPERPOOL_WYOMING_INSECURE": "1"}
    from_env = serve_settings(parse("serve"), environ)
    assert from_env.streams.max_sessions == 99 and from_env.wyoming_insecure is True
    wyoming = serve_settings(parse("wyoming", "--stream-idle-timeout-s", "7"), {})
    assert wyoming.streams.idle_timeout_s == 7.0 and wyoming.wyoming_host == "127.0.0.1"
