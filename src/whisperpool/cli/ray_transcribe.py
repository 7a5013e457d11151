"""``whisperpool ray transcribe``: files, folders, globs and URIs on a Ray cluster, to JSON Lines."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ..cluster.batch import BatchConfig, transcribe_batch
from ..config import PoolConfig
from ..errors import PoolNotReady
from .codes import EXIT_OK, EXIT_SOME_FAILED, EXIT_START_FAILED
from .parser import _positive_int, add_decode_options
from .pool_options import add_backend_option, pool_config


def add_ray_transcribe(ray_sub: Any) -> None:
    """The ``ray transcribe`` sub-command and its flags."""
    p = ray_sub.add_parser(
        "transcribe",
        help="transcribe many files on a Ray cluster (Ray Data, an actor pool of warm engines)",
        description="Reads the audio with Ray Data and transcribes it on actors that each hold a warm pool, "
        "appending to --output the same JSON Lines as 'whisperpool transcribe --json' (a file that fails is "
        "an error record; the exit code is 1 if any of the inputs has one). Files the output already holds "
        "are skipped, so a stopped run resumes where it was. Joins the cluster at --address or RAY_ADDRESS, "
        "else starts a local one.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, folders (their audio files, recursively), globs, or URIs Ray Data reads (s3://, gs://, ...)",
    )
    p.add_argument("-o", "--output", required=True, help="JSON Lines file to append to (read first, to resume)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--num-cpus", type=_positive_int, default=None, help="CPUs of a local cluster (default: all)")
    g = p.add_argument_group("actors")
    g.add_argument(
        "--actors",
        type=_positive_int,
        default=None,
        help="actors, each a warm engine (default: cluster CPUs / CPUs per actor)",
    )
    g.add_argument(
        "--min-actors", type=_positive_int, default=None, help="autoscale: fewest actors (with --max-actors)"
    )
    g.add_argument("--max-actors", type=_positive_int, default=None, help="autoscale: most actors (with --min-actors)")
    g.add_argument(
        "--workers-per-actor",
        dest="workers",
        type=_positive_int,
        default=1,
        help="worker processes per actor (default: 1)",
    )
    g.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="threads per worker; an actor takes workers x threads CPUs (default: 1)",
    )
    g.add_argument(
        "--batch-size", type=_positive_int, default=None, help="files per call to an actor (default: its workers)"
    )
    g.add_argument(
        "--read-tasks",
        type=_positive_int,
        default=2,
        help="Ray Data reading tasks at once, each a process (default: 2)",
    )
    g.add_argument(
        "--model",
        default=None,
        help="'base' (packaged, offline), with --backend whispercpp also base-q8_0 or base-q5_0, or a model every "
        "node has (default: base)",
    )
    add_backend_option(g)
    g.add_argument("--compute-type", default="int8", help="CTranslate2 compute type (default: int8)")
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="(default: cpu)")
    g.add_argument("--timeout", type=float, default=300.0, help="seconds one file may take (default: 300)")
    add_decode_options(p)
    p.add_argument("--no-progress", action="store_true", help="no Ray Data progress bars")


def batch_config(args: argparse.Namespace) -> BatchConfig:
    """The :class:`BatchConfig` the flags describe; each actor's pool from the shared engine flags."""
    # an actor has its share of a node's cores: one worker of one thread unless told
    pool = pool_config(args, PoolConfig(pool_size=1, threads_per_worker=1, express_workers=0))
    return BatchConfig(
        pool=pool,
        actors=args.actors,
        min_actors=args.min_actors,
        max_actors=args.max_actors,
        batch_size=args.batch_size,
        read_tasks=args.read_tasks,
        address=args.address,
        num_cpus=args.num_cpus,
        progress=not args.no_progress,
    )


def ray_transcribe(args: argparse.Namespace, err: Console) -> int:
    try:
        summary = transcribe_batch(args.inputs, args.output, batch_config(args))
    except PoolNotReady as exc:
        err.print(f"whisperpool: cannot start: {exc}", highlight=False, markup=False)
        return EXIT_START_FAILED
    err.print(
        f"whisperpool: {summary.found} files: {summary.skipped} already in {summary.output}, "
        f"{summary.transcribed} transcribed, {summary.failed} failed",
        highlight=False,
    )
    return EXIT_SOME_FAILED if summary.failed_in_output else EXIT_OK
