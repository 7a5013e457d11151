"""The engine flags every command shares, and the one place they become a :class:`PoolConfig`.

``transcribe``, ``stream`` and ``ray transcribe`` build their pool with :func:`pool_config`
(from their own defaults: ``ray transcribe``'s actor has one worker of one thread);
``serve``, ``wyoming`` and ``ray serve`` put :func:`pool_values` into the server's settings,
after the ``WHISPERPOOL_*`` variables. So ``--workers 3 --backend whispercpp --language en``
means the same pool on every command. A flag a command does not have, or left at ``None``,
keeps the default.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, get_args

from ..config import BackendName, PoolConfig

# the engines a command line may pick: "fake" is the tests' (WHISPERPOOL_BACKEND=fake)
BACKENDS = tuple(name for name in get_args(BackendName) if name != "fake")
BACKEND_HELP = (
    "engine: faster-whisper (CTranslate2) or whispercpp (whisper.cpp; --model base, base-q8_0, base-q5_0 "
    "or a ggml file)"
)

# argparse dest -> the setting it fills, by the server settings' dotted names
POOL_FLAGS = {
    "model": "pool.model",
    "backend": "pool.backend",
    "workers": "pool.pool_size",
    "threads": "pool.threads_per_worker",
    "compute_type": "pool.compute_type",
    "device": "pool.device",
    "timeout": "pool.request_timeout_s",
    "max_queue": "pool.max_queue",
    "max_batch": "pool.max_batch",
    "max_audio_s": "pool.max_audio_s",
    "min_workers": "pool.min_workers",
    "max_workers": "pool.max_workers",
    "express_workers": "pool.express_workers",
    "max_total_rss_mb": "pool.max_total_rss_mb",
    "state_file": "pool.state_file",
    "language": "decode.language",
    "task": "decode.task",
    "beam_size": "decode.beam_size",
    "initial_prompt": "decode.initial_prompt",
    "word_timestamps": "decode.word_timestamps",
    "vad_filter": "decode.vad_filter",
    "window": "decode.window",
}


def pool_values(args: argparse.Namespace) -> dict[str, Any]:
    """The engine flags given, by dotted name: ``{"pool.pool_size": 3, "decode.language": "en"}``."""
    return {target: getattr(args, flag) for flag, target in POOL_FLAGS.items() if getattr(args, flag, None) is not None}


def pool_config(args: argparse.Namespace, base: PoolConfig | None = None) -> PoolConfig:
    """``base`` (default: :class:`PoolConfig`'s defaults) with the engine flags given."""
    base = base or PoolConfig()
    values = pool_values(args)
    pool = {k.removeprefix("pool."): v for k, v in values.items() if k.startswith("pool.")}
    decode = {k.removeprefix("decode."): v for k, v in values.items() if k.startswith("decode.")}
    return dataclasses.replace(base, decode=dataclasses.replace(base.decode, **decode), **pool)


def add_backend_option(parser: Any, *, default: str | None = None) -> None:
    """``--backend`` (on a parser or an argument group); ``default=None`` leaves it to the settings."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default,
        help=f"{BACKEND_HELP} (default: {default or PoolConfig().backend})",
    )


__all__ = ["BACKENDS", "POOL_FLAGS", "add_backend_option", "pool_config", "pool_values"]
