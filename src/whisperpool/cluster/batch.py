"""Batch transcription on Ray Data: many files, many machines, warm engines.

::

    inputs (files, folders, globs, URIs) --list_inputs--> files, less those in the output
        |
        v
    ray.data.read_binary_files(include_paths=True)      Ray Data's reading tasks, any node
        |  rows {path, bytes}, streamed
        v
    map_batches(Transcriber, ActorPoolStrategy)          N actors (or min..max, autoscaled),
        |  rows {path, record}                            each a warm TranscriptionEngine with
        v                                                 its own worker processes
    the driver appends each record to the JSON Lines output as it arrives

A record is :func:`~whisperpool.results.file_record` or
:func:`~whisperpool.results.error_record`: the lines ``whisperpool transcribe --json``
prints. A file that fails (not audio, too long, a worker crash) becomes an error record;
the run goes on. Records are appended and flushed one by one, so a run that is stopped
and started again reads the output first and does only the files missing from it.

Ray's ``num_cpus`` accounting matches what an actor runs: its engine's
``pool_size x threads_per_worker`` cores. Reading is I/O, so reading tasks reserve no
core (:data:`READ_CPUS`; otherwise actors holding every core would starve the reads), and
``BatchConfig.read_tasks`` bounds how many run at once instead. Each file is a block of
its own, so its record streams out as soon as it is done (Ray Data holds a block's
records until the whole block is transcribed) and the files spread evenly over the actors;
the driver takes each block as it comes, fetching none ahead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import PoolConfig
from ..engine import TranscriptionEngine
from ..errors import ConfigError, InvalidAudio, MissingDependency, PoolNotReady
from ..results import error_record, file_record
from .inputs import is_uri, list_inputs, read_done

log = logging.getLogger(__name__)

READ_CPUS = 0.0  # cores a reading task reserves (see the module docstring)


def _actor_pool() -> PoolConfig:
    return PoolConfig(pool_size=1, threads_per_worker=1, express_workers=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class BatchConfig:
    """How a batch run is spread over the cluster.

    ``pool`` is each actor's engine (default: 1 worker of 1 thread, no express worker; ``threads_per_worker``
    must be set, since an actor has only its share of a node's cores). An actor reserves
    ``pool_size x threads_per_worker`` CPUs from Ray, its express workers' too if it has
    any (:attr:`cpus_per_actor`).

    ``actors`` fixes the number of actors (default: as many as the cluster's CPUs hold
    when the run starts); ``min_actors`` and ``max_actors`` instead let Ray Data scale the
    pool between them by its queue. ``batch_size``: files an actor is given at a time
    (default: its ``pool_size``, so each worker gets one); ``max_batches_per_actor``:
    batches queued at an actor beyond those (default 2; more keeps a fast actor fed,
    fewer leaves the files to spread until the end). ``read_tasks``: Ray Data reading
    tasks at once (default 2; they reserve no CPU, so this is what bounds them: each is a
    process reading one file). ``address``: the cluster to join
    (default: ``RAY_ADDRESS``, else a new local cluster of ``num_cpus`` CPUs, default all).
    ``progress``: Ray Data's progress bars.
    """

    pool: PoolConfig = field(default_factory=_actor_pool)
    actors: int | None = None
    min_actors: int | None = None
    max_actors: int | None = None
    batch_size: int | None = None
    max_batches_per_actor: int = 2
    read_tasks: int = 2
    address: str | None = None
    num_cpus: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.pool.express_workers is None:  # an actor's CPUs are reserved per worker: none unless asked
            object.__setattr__(self, "pool", self.pool.replace(express_workers=0))
        for name in (
            "actors",
            "min_actors",
            "max_actors",
            "batch_size",
            "num_cpus",
            "max_batches_per_actor",
            "read_tasks",
        ):
            value = getattr(self, name)
            optional = name not in ("max_batches_per_actor", "read_tasks")
            if (value is not None or not optional) and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(
                    f"BatchConfig.{name} must be an integer >= 1{' or None' if optional else ''}, got {value!r}"
                )
        if self.pool.threads_per_worker is None:
            raise ConfigError(
                "BatchConfig.pool.threads_per_worker must be set: an actor has its share of a node's cores"
            )
        scaled = self.min_actors is not None or self.max_actors is not None
        if scaled and (self.min_actors is None or self.max_actors is None or self.actors is not None):
            raise ConfigError("BatchConfig: give actors, or both min_actors and max_actors, not a mix")
        if scaled and self.min_actors > self.max_actors:  # type: ignore[operator]
            raise ConfigError(f"BatchConfig.min_actors ({self.min_actors}) is above max_actors ({self.max_actors})")

    @property
    def cpus_per_actor(self) -> int:
        return (self.pool.pool_size + self.pool.express_size) * (self.pool.threads_per_worker or 1)

    def actor_range(self, cluster_cpus: float) -> tuple[int, int]:
        """(fewest, most) actors; equal unless autoscaled."""
        if self.min_actors is not None and self.max_actors is not None:
            return self.min_actors, self.max_actors
        fixed = self.actors or max(1, int(cluster_cpus // self.cpus_per_actor))
        return fixed, fixed


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What a run did: files found, skipped as already written, transcribed and failed in
    this run, and how many of the files found have an error record in the output now."""

    found: int
    skipped: int
    transcribed: int
    failed: int
    failed_in_output: int
    output: str


class Transcriber:
    """One actor of the pool: a warm engine for the whole run (the expensive load happens
    once, in ``__init__``), fed batches of files by Ray Data."""

    def __init__(self, pool: PoolConfig) -> None:
        self.engine = TranscriptionEngine(pool)
        self.engine.start_sync()
        # The engine decodes on the calling thread: a thread per worker keeps them all busy.
        self.threads = ThreadPoolExecutor(pool.pool_size, thread_name_prefix="whisperpool-batch")

    def _one(self, path: str, blob: bytes) -> str:
        try:
            record = file_record(path, self.engine.transcribe_sync(blob, name=path))
        except Exception as exc:  # one file's failure, whatever it is, is its record: the run goes on
            record = error_record(path, exc)
        return json.dumps(record, ensure_ascii=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        records = list(self.threads.map(self._one, paths, batch["bytes"]))
        return {"path": np.array(paths, dtype=object), "record": np.array(records, dtype=object)}

    def __del__(self) -> None:  # Ray Data ends its actors at the end of the run: stop the workers
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close_sync(timeout=engine.config.stop_timeout_s)


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependency("whisperpool ray needs the 'ray' extra: pip install 'whisperpool[ray]'") from exc
    return ray


def _ray_path(file: str) -> str:
    """The path Ray Data reports for ``file`` (a URI without its scheme)."""
    if not is_uri(file):
        return file
    from pyarrow import fs

    return fs.FileSystem.from_uri(file)[1]


def _on_ray(files: list[str], config: BatchConfig) -> Iterator[dict[str, Any]]:
    """Each file's record, as the actors finish them (not in order)."""
    ray = _ray()
    joined = not ray.is_initialized()
    if joined:
        local = config.address is None and not os.environ.get("RAY_ADDRESS")
        # A local cluster lives as long as this run: no dashboard, whose processes would
        # take start-up time and cores from the actors.
        extra = {"num_cpus": config.num_cpus, "include_dashboard": False} if local else {}
        ray.init(address=config.address, **extra)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = config.progress
        fewest, most = config.actor_range(ray.cluster_resources().get("CPU", 1.0))
        names = {_ray_path(f): f for f in files}
        dataset = ray.data.read_binary_files(
            files,
            include_paths=True,
            num_cpus=READ_CPUS,
            concurrency=config.read_tasks,
            override_num_blocks=len(files),  # a block a file: each result streams out when done
        ).map_batches(
            Transcriber,
            fn_constructor_kwargs={"pool": config.pool},
            batch_size=config.batch_size or config.pool.pool_size,
            batch_format="numpy",
            num_cpus=config.cpus_per_actor,
            compute=ray.data.ActorPoolStrategy(
                min_size=fewest, max_size=most, max_tasks_in_flight_per_actor=config.max_batches_per_actor
            ),
        )
        try:
            # a block at a time, none fetched ahead: iter_rows' prefetch holds each record
            # back until the next block is done too (the first result waits a second file)
            for batch in dataset.iter_batches(batch_size=None, prefetch_batches=0, batch_format="numpy"):
                for path, line in zip(batch["path"], batch["record"], strict=True):
                    record = json.loads(line)
                    record["file"] = names.get(str(path), str(path))
                    yield record
        except ray.exceptions.RayActorError as exc:
            if not exc.actor_init_failed:
                raise
            # Ray's message ends with the engine's own error line (a missing model, ...).
            cause = str(exc).strip().splitlines()[-1]
            raise PoolNotReady(f"the actors could not start their engines: {cause}") from exc
    finally:
        if joined:
            ray.shutdown()


def transcribe_batch(
    inputs: Iterable[str],
    output: str | os.PathLike,
    config: BatchConfig | None = None,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Transcribe ``inputs`` (files, folders, globs, URIs) on Ray into ``output`` (JSON Lines).

    Files ``output`` already holds a record of are skipped; new records are appended as
    they arrive, and each is passed to ``on_record``. Raises
    :class:`~whisperpool.errors.ConfigError` when no audio file is found or the inputs mix
    filesystems, :class:`~whisperpool.errors.PoolNotReady` when the actors cannot start
    their engines (a missing model), and :class:`~whisperpool.errors.MissingDependency`
    without the ``ray`` extra.
    """
    config = config or BatchConfig()
    files = list_inputs(inputs)
    if not files:
        raise ConfigError("no audio files found in the inputs given")
    if len({f.split("://", 1)[0] if is_uri(f) else "" for f in files}) > 1:
        raise ConfigError("the inputs of one run must be on one filesystem (all local paths, or one URI scheme)")
    path = Path(output)
    done = read_done(path)
    todo = [f for f in files if f not in done]
    # Ray Data fails a whole read on a missing file: report those here, as the local CLI does.
    missing = [f for f in todo if not is_uri(f) and not os.path.isfile(f)]
    readable = [f for f in todo if f not in set(missing)]
    failed = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:

        def write(record: dict[str, Any]) -> None:
            nonlocal failed
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()  # a stop loses at most the line being written
            failed += "error" in record
            done[record["file"]] = "error" in record
            if on_record is not None:
                on_record(record)

        for f in missing:
            write(error_record(f, InvalidAudio(f"{f}: no such file")))
        if readable:
            for record in _on_ray(readable, config):
                write(record)
    return BatchSummary(
        found=len(files),
        skipped=len(files) - len(todo),
        transcribed=len(todo) - failed,
        failed=failed,
        failed_in_output=sum(done.get(f, False) for f in files),
        output=str(path),
    )


__all__ = ["READ_CPUS", "BatchConfig", "BatchSummary", "Transcriber", "transcribe_batch"]
