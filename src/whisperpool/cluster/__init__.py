"""The cluster face: the warm engine on Ray (``pip install 'whisperpool[ray]'``), beyond one machine.

:mod:`.batch` is batch transcription on Ray Data: files read by Ray Data, transcribed on
an actor pool whose actors each hold a warm engine, written as the same JSON Lines as
``whisperpool transcribe --json``. :mod:`.serve` runs the OpenAI-compatible HTTP app of :mod:`whisperpool.server` on Ray
Serve, each replica holding its own warm :class:`~whisperpool.engine.TranscriptionEngine`::

    client --HTTP--> Ray Serve proxy --(picks a replica with a free slot)--> replica 1..N
                                                                            FastAPI app
                                                                            engine -> workers

Like the other faces it talks to the engine only. This package imports without Ray, so
the command line can name the missing extra (:func:`require_extra`) instead of failing
with an ``ImportError``.
"""

from __future__ import annotations

from ..errors import MissingDependency

EXTRA = "ray"
# the modules the ray extra installs (pyproject.toml's [ray] extra), by import name; the
# HTTP app is the server extra's, so serving on Ray needs both
EXTRA_MODULES = ("ray", "ray.serve", "fastapi", "uvicorn", "python_multipart")


def require_extra() -> None:
    """Raise :class:`MissingDependency` naming the extra if Ray (or the server) is missing."""
    MissingDependency.unless_importable(EXTRA_MODULES, extra=EXTRA, needed_for="running on Ray")


__all__ = ["EXTRA", "require_extra"]
