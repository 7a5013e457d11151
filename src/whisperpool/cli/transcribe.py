"""``whisperpool transcribe``: files and folders on a local warm pool, or sent to a server (``--url``)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..audio import AUDIO_SUFFIXES
from ..config import PoolConfig
from ..engine import PoolStatus, TranscriptionEngine
from ..errors import ModelError, PoolNotReady, WhisperPoolError
from ..results import TranscriptionResult, error_record, file_record
from .codes import EXIT_OK, EXIT_SOME_FAILED, EXIT_START_FAILED, EXIT_USAGE
from .pool_options import pool_config


def transcribe_config(args: argparse.Namespace) -> PoolConfig:
    """The local pool of ``transcribe`` (without ``--url``): no express worker, since one
    caller waits for every result and none is worth a model's memory and warm-up."""
    return pool_config(args, PoolConfig(express_workers=0))


def _status_table(status: PoolStatus) -> Table:
    table = Table(title="pool status", show_header=True)
    for column in ("worker", "pid", "state", "load s", "warm-up s", "served", "error"):
        table.add_column(column)
    for w in status.workers:
        table.add_row(
            str(w.id),
            str(w.pid),
            str(w.state),
            f"{w.load_s:.2f}" if w.load_s is not None else "-",
            f"{w.warm_up_s:.2f}" if w.warm_up_s is not None else "-",
            str(w.requests_served),
            w.error or "",
        )
    p50 = f"{status.latency_p50_s:.3f}" if status.latency_p50_s is not None else "-"
    p95 = f"{status.latency_p95_s:.3f}" if status.latency_p95_s is not None else "-"
    table.caption = (
        f"total {status.total_workers}, warm {status.warm_workers}, busy {status.busy_workers}, "
        f"failed {status.failed_workers}; completed {status.requests_completed}, "
        f"failed {status.requests_failed}; latency p50 {p50} s, p95 {p95} s"
    )
    return table


def _print_outcome(
    args: argparse.Namespace,
    path: str,
    outcome: dict[str, Any] | WhisperPoolError,
    where: str,
    out: Console,
    err: Console,
) -> None:
    """One file's transcript (a :func:`~whisperpool.results.file_record`) or error, as text or a JSON line."""
    if isinstance(outcome, WhisperPoolError):
        if args.json:
            print(json.dumps(error_record(path, outcome), ensure_ascii=False), flush=True)
        else:
            err.print(f"[red]error: {outcome}[/red]", highlight=False)
    elif args.json:
        print(json.dumps(outcome, ensure_ascii=False), flush=True)
    else:
        out.print(f"[bold]{path}[/bold] ({outcome['duration']:.1f} s, {outcome['language']}, {where})", highlight=False)
        out.print(f"  {outcome['text']}", highlight=False, markup=False)


async def _transcribe_remote(args: argparse.Namespace, out: Console, err: Console) -> int:
    from ..remote import RemoteEngine

    async with RemoteEngine(args.url, model=args.model, api_key=args.api_key, retries=max(0, args.retries)) as remote:
        limit = asyncio.Semaphore(4)  # files in flight: the server queues the rest anyway

        async def one(path: str) -> dict[str, Any] | WhisperPoolError:
            async with limit:
                try:
                    body = await remote.transcribe(
                        path,
                        language=args.language,
                        task=args.task,
                        prompt=args.initial_prompt,
                        word_timestamps=args.word_timestamps,
                        window=args.window,
                    )
                except WhisperPoolError as exc:
                    return exc
            keys = ("text", "language", "duration", "segments")
            return {"file": path, **{k: body.get(k) for k in keys}, "model": args.model}

        tasks = [asyncio.create_task(one(path)) for path in args.files]
        outcomes = []
        for path, task in zip(args.files, tasks, strict=True):
            outcomes.append(await task)
            _print_outcome(args, path, outcomes[-1], remote.url, out, err)
    failed = [o for o in outcomes if isinstance(o, WhisperPoolError)]
    if failed and len(failed) == len(outcomes) and all(isinstance(o, PoolNotReady) for o in failed):
        return EXIT_START_FAILED  # nothing reached a working server
    return EXIT_SOME_FAILED if failed else EXIT_OK


def expand_inputs(paths: list[str]) -> list[str]:
    """Files as given; a folder becomes the audio files in it (by suffix, sorted, recursively)."""
    files = []
    for path in paths:
        folder = Path(path)
        if folder.is_dir():
            files += sorted(str(f) for f in folder.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
        else:
            files.append(path)
    return files


async def _transcribe(args: argparse.Namespace, out: Console, err: Console) -> int:
    args.files = expand_inputs(args.files)
    if not args.files:
        err.print("[red]whisperpool: no audio files found in the folders given[/red]", highlight=False)
        return EXIT_USAGE
    if args.url:
        return await _transcribe_remote(args, out, err)
    engine = TranscriptionEngine(transcribe_config(args))
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=args.no_progress,
        transient=False,
    )
    warm_task = progress.add_task("warming workers", total=100)
    files_task = progress.add_task("files", total=len(args.files))
    engine.on("worker_state_changed", lambda _e: progress.update(warm_task, completed=engine.status().warm_up_progress))
    failures = 0
    with progress:
        try:
            await engine.start()
        except (ModelError, PoolNotReady) as exc:
            progress.stop()
            err.print(f"[red]whisperpool: cannot start: {exc}[/red]", highlight=False)
            await engine.close()
            return EXIT_START_FAILED
        progress.update(warm_task, completed=100)
        limit = asyncio.Semaphore(engine.config.pool_size * 2)  # bounds decoded audio held in memory

        async def one(path: str) -> TranscriptionResult | WhisperPoolError:
            pieces_task = None

            def on_progress(done: int, total: int) -> None:  # a long file: a bar of its own
                nonlocal pieces_task
                if pieces_task is None and total > 1:
                    pieces_task = progress.add_task(f"  {Path(path).name} (pieces)", total=total)
                if pieces_task is not None:
                    progress.update(pieces_task, completed=done)

            async with limit:
                try:
                    # only --json prints segments: text alone spares a long file's pieces their alignment
                    return await engine.transcribe(path, on_progress=on_progress, segment_timestamps=args.json)
                except WhisperPoolError as exc:
                    return exc
                finally:
                    progress.advance(files_task)

        try:
            tasks = [asyncio.create_task(one(path)) for path in args.files]
            for path, task in zip(args.files, tasks, strict=True):
                outcome = await task
                failures += isinstance(outcome, WhisperPoolError)
                if isinstance(outcome, TranscriptionResult):
                    where = f"worker {outcome.worker_id}, {outcome.timings.total_s:.2f} s"
                    if outcome.pieces > 1:
                        where = f"{outcome.pieces} pieces on the workers, {outcome.timings.total_s:.2f} s"
                    outcome = file_record(path, outcome)
                else:
                    where = ""
                _print_outcome(args, path, outcome, where, out, err)
            status = engine.status()
        finally:
            await engine.close()
    if args.status:
        out.print(_status_table(status))
    return EXIT_SOME_FAILED if failures else EXIT_OK
