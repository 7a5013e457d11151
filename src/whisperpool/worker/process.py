"""A worker's operating-system process: started fresh, never from the caller's main module.

The worker runs ``python -m whisperpool.worker.main FD`` in a new interpreter, as a
child of this process, and speaks over one end of a socket pair (``FD``), wrapped in
a :class:`multiprocessing.connection.Connection`. Unlike ``multiprocessing``'s spawn
method, nothing of the caller's ``__main__`` is imported again in the child, so a
script without ``if __name__ == "__main__":``, a script fed on standard input and a
notebook cell can all start a pool.

The child's standard output and error go to a pipe. A small thread per worker copies
each line to this process's standard error (so worker logs show as before) and keeps
the last :data:`TAIL_LINES` lines: when a worker cannot boot, they say why.

The child runs in a session of its own and ignores SIGINT and SIGTERM: a terminal's
Ctrl-C, ``timeout`` or a service manager signal the parent, which stops its workers
in order (after in-flight requests, within the grace period); when the parent dies,
the kernel kills the child (``PR_SET_PDEATHSIG``) and its connection reaches EOF.

The pool's manager thread waits on :attr:`WorkerProcess.sentinel`, a descriptor that
becomes readable when the child exits (a pidfd on Linux; elsewhere a pipe the copying
thread closes once the child has exited).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path

TAIL_LINES = 20
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding whisperpool/


class WorkerProcess:
    """One child interpreter running the worker loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pid: int | None = None
        self.sentinel: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._copier: threading.Thread | None = None
        self._exit_w: int | None = None  # the fallback sentinel's write end

    def start(self) -> Connection:
        """Start the child; returns the parent's end of its connection."""
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")  # lines reach the tail as they are written
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "whisperpool.worker.main", str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # out of the caller's process group: see the module docstring
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self.pid = self._popen.pid
        try:
            self.sentinel = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux 5.3+: the copying thread signals the exit
            self.sentinel, self._exit_w = os.pipe()
        self._copier = threading.Thread(target=self._copy_output, name=f"{self.name}-output", daemon=True)
        self._copier.start()
        return Connection(parent_sock.detach())

    def _copy_output(self) -> None:
        assert self._popen is not None and self._popen.stdout is not None
        with self._popen.stdout as out:
            for raw in out:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self._tail.append(line)
                stream = sys.stderr
                if stream is not None:
                    try:
                        stream.write(line + "\n")
                    except (OSError, ValueError):  # a closed or broken stderr: keep the tail only
                        pass
        if self._exit_w is not None:
            self._popen.wait()
            os.close(self._exit_w)
            self._exit_w = None

    @property
    def exitcode(self) -> int | None:
        """The exit status once reaped (negative: killed by that signal), else None."""
        return None if self._popen is None else self._popen.returncode

    def output_tail(self) -> tuple[str, ...]:
        """The last lines the child printed."""
        return tuple(self._tail)

    def kill(self) -> None:
        if self._popen is not None and self._popen.returncode is None:
            self._popen.kill()

    def reap(self, timeout: float = 5.0) -> int | None:
        """Collect the exited child and the rest of its output; returns its exit status."""
        assert self._popen is not None
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()
        if self._copier is not None:
            self._copier.join(timeout=1.0)  # its last lines, unless a grandchild holds the pipe
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None
        return self._popen.returncode


__all__ = ["TAIL_LINES", "WorkerProcess"]
