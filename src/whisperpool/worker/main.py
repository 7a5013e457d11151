"""The worker process: load the model, prove it warm, then serve requests until told to stop.

Run as ``python -m whisperpool.worker.main FD`` by :mod:`.process`: a fresh interpreter
that imports nothing of the parent's ``__main__``. It speaks only over the connection
on descriptor ``FD`` (see :mod:`.protocol`); the first message, :class:`~.protocol.Boot`,
says what to load. It never decides anything about the pool: a failure is reported and
the parent decides. When the parent dies, the connection reaches EOF and the worker
exits; on Linux the kernel also kills it (``PR_SET_PDEATHSIG``) even in the middle of a
request.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from multiprocessing.connection import Connection

from ..backends import create_backend
from ..errors import ErrorInfo
from . import protocol as p

EXIT_OK = 0
EXIT_ORPHANED = 2
EXIT_WARMUP_FAILED = 3
PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Ask the kernel to kill us if the parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the pipe EOF still works
            pass


def rss_bytes() -> int:
    """This process's resident memory."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux: peak instead of current
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_main(conn: Connection) -> None:
    _die_with_parent()
    # The parent owns shutdown: it says Stop, or it dies and the kernel kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        boot = conn.recv()
    except (EOFError, OSError):
        sys.exit(EXIT_ORPHANED)
    if not isinstance(boot, p.Boot):
        sys.exit(f"whisperpool worker: expected a Boot message first, got {type(boot).__name__}")
    if os.getppid() != boot.parent_pid:
        os._exit(EXIT_ORPHANED)
    worker_id, spec, warmup_options = boot.worker_id, boot.spec, boot.warmup_options
    logging.basicConfig(
        level=boot.log_level, format=f"%(asctime)s worker-{worker_id} %(levelname)s %(name)s: %(message)s"
    )
    try:
        started = time.perf_counter()
        backend = create_backend(spec)
        backend.load()
        conn.send(p.Loaded(os.getpid(), time.perf_counter() - started))
        started = time.perf_counter()
        windows = backend.warm_up(warmup_options)
        conn.send(p.Ready(os.getpid(), time.perf_counter() - started, rss_bytes(), windows))
    except BaseException as exc:  # report every kind of failure, then exit with our code
        log.exception("warm-up failed")
        try:
            conn.send(p.WarmUpFailed(ErrorInfo.from_exception(exc)))
        except OSError:
            pass
        sys.exit(EXIT_WARMUP_FAILED)

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            log.info("parent went away; exiting")
            return
        if isinstance(msg, p.Stop):
            return
        if isinstance(msg, p.Ping):
            conn.send(p.Pong(msg.seq))
        elif isinstance(msg, p.Transcribe):
            _serve(conn, backend, msg)
        elif isinstance(msg, p.Plan):
            _plan(conn, backend, msg)
        else:
            log.error("unknown message %r", type(msg).__name__)


def _serve(conn: Connection, backend, msg: p.Transcribe) -> None:
    def on_segment(segment) -> None:
        conn.send(p.SegmentDecoded(msg.request_id, segment))

    started = time.perf_counter()
    try:
        if msg.pieces:
            result = backend.transcribe_pieces(msg.audio, msg.pieces, msg.options)
        else:
            result = backend.transcribe(msg.audio, msg.options, on_segment if msg.stream else None)
    except Exception as exc:  # one bad request fails alone; the worker lives on
        log.warning("request %d failed: %s", msg.request_id, exc)
        conn.send(p.Failed(msg.request_id, ErrorInfo.from_exception(exc)))
        return
    conn.send(p.Done(msg.request_id, result, time.perf_counter() - started, rss_bytes()))


def _plan(conn: Connection, backend, msg: p.Plan) -> None:
    started = time.perf_counter()
    try:
        regions, language, probability = backend.plan(msg.audio, msg.options, msg.max_piece_s, msg.detect_language)
    except Exception as exc:  # one bad request fails alone; the worker lives on
        log.warning("request %d: planning failed: %s", msg.request_id, exc)
        conn.send(p.Failed(msg.request_id, ErrorInfo.from_exception(exc)))
        return
    conn.send(p.Planned(msg.request_id, regions, language, probability, time.perf_counter() - started))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        sys.exit("usage: python -m whisperpool.worker.main FD  (started by the pool, not by hand)")
    worker_main(Connection(int(args[0])))


if __name__ == "__main__":
    main()
