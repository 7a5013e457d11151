"""``whisperpool stream``: play a file at real-time pace into a local session or a Realtime server."""

from __future__ import annotations

import argparse
import asyncio
import json

from rich.console import Console

from ..audio import load_audio
from ..config import PoolConfig
from ..engine import TranscriptionEngine
from ..errors import WhisperPoolError
from ..streaming.realtime import COMPLETED, DELTA, FAILED, PARTIAL
from .codes import EXIT_OK, EXIT_USAGE
from .pool_options import pool_config


def stream_config(args: argparse.Namespace) -> PoolConfig:
    """The local pool of ``stream`` (without ``--url``): no express worker, since one
    caller waits for every result and none is worth a model's memory and warm-up."""
    return pool_config(args, PoolConfig(express_workers=0))


async def _stream(args: argparse.Namespace, out: Console, err: Console) -> int:
    from ..streaming.client import play_local, play_realtime

    try:
        audio = await asyncio.to_thread(load_audio, args.file)
    except WhisperPoolError as exc:
        err.print(f"whisperpool: {exc}", highlight=False, markup=False)
        return EXIT_USAGE
    if args.pace <= 0:
        err.print("whisperpool: --pace must be > 0", highlight=False)
        return EXIT_USAGE
    live = out.is_terminal and not args.json

    async def show(events) -> None:
        """Realtime server events, from a server or the local player (see whisperpool.streaming.realtime)."""
        committed = ""  # the current item's deltas
        async for t, event in events:
            kind = event["type"]
            if args.json:
                out.print(json.dumps({"t": round(t, 3), **event}), highlight=False, markup=False, soft_wrap=True)
                continue
            if kind in (DELTA, PARTIAL):
                if kind == DELTA:
                    committed += event["delta"]
                # whisperpool's local "partial" adds the words not yet committed
                shown = event["text"] if kind == PARTIAL else committed
                if live:
                    out.file.write("\r\x1b[2K" + shown[-(out.width - 1) :])
                    out.file.flush()
            elif kind == COMPLETED:
                if live:
                    out.file.write("\r\x1b[2K")
                times = f"[{event['start_s']:6.2f} -> {event['end_s']:6.2f}] " if "start_s" in event else ""
                out.print(f"{times}{event['transcript']}  [dim](final at {t:.2f} s)[/dim]", highlight=False)
                committed = ""
            elif kind in ("error", FAILED):
                err.print(f"error: {event['error'].get('message')}", highlight=False, markup=False)

    if args.url or args.realtime:
        url = args.url or "ws://127.0.0.1:8000"
        await show(
            play_realtime(url, audio, pace=args.pace, language=args.language, model=args.model, api_key=args.api_key)
        )
        return EXIT_OK
    async with TranscriptionEngine(stream_config(args)) as engine:
        await show(play_local(engine.stream(), audio, pace=args.pace))
    return EXIT_OK
