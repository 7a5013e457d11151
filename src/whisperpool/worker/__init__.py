"""A worker: one process that keeps a model loaded and warm, and the parent's handle on it.

::

    parent (pool's manager thread)              child: python -m whisperpool.worker.main
    Worker (handle.py) --- Boot, Transcribe, Ping, Stop --->  worker_main (main.py)
      WorkerProcess (process.py)  <--- Loaded, Ready, Done, Failed, Pong ---  backend
      state (states.py)             messages: protocol.py

Only :mod:`.main` imports a backend, and it runs in the child.
"""

from .handle import Worker
from .states import TRANSITIONS, WorkerState

__all__ = ["TRANSITIONS", "Worker", "WorkerState"]
