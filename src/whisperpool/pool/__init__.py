"""The pool: long-lived worker processes that keep a Whisper model loaded and warm.

Data flow::

    submit() --> queue (priority, FIFO) --+                 +--> Worker 0 process
                 jobs.py                  |  manager thread |      (connection 0)
    Future <-- result / error ------------+-- wait() on ---+--> Worker 1 process
                                             connections,       (connection 1)
                                             exit sentinels,
                                             wake-up pipe

Callers submit from any thread and get a ``concurrent.futures.Future``. One manager
thread owns every worker and the queue: it blocks in
``multiprocessing.connection.wait()`` on every worker's connection and exit sentinel and
a wake-up pipe, with a timeout that is the nearest deadline (warm-up, request, kill,
restart, scaling, background check), so nothing sleeps and polls. All state changes
happen on that thread, under one lock, which :meth:`ProcessPool.get_status` also takes.

The parts, one module each:

=================  ==================================================================
``manager``        :class:`ProcessPool`: the public methods and the loop that waits
``jobs``           a request on its way (:class:`Job`) and the priority queue
``messages``       what the pool does with each message a worker sends
``supervision``    deadlines, deaths, retries, replacements, planned recycling
``lifecycle``      readiness after warm-up, and shutdown
``scaling``        adaptive sizing: the pool's side of the autoscaler
``autoscaler``     the sizing policy, as plain logic
``background``     re-warm and health-check inferences on idle workers
``pieces``         long recordings: planned, cut at silences, decoded in pieces, stitched
``batching``       queued short requests decoded together as one batch
``status``         the counters and the status snapshots
``warmstart``      warm-up timings and memory kept across restarts
=================  ==================================================================

A worker itself (its process, connection and lifecycle) is :mod:`whisperpool.worker`.
"""

from .jobs import PRIORITY_DEFAULT, PRIORITY_REALTIME, Job
from .manager import ProcessPool
from .status import PoolStatus, WarmUpSummary, WorkerStatus

__all__ = ["PRIORITY_DEFAULT", "PRIORITY_REALTIME", "Job", "PoolStatus", "ProcessPool", "WarmUpSummary", "WorkerStatus"]
