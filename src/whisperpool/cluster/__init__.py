"""The cluster face: the warm engine on a Ray cluster, beyond one machine.

* :mod:`.batch` - batch transcription on Ray Data: files read by Ray Data, transcribed on
  an actor pool whose actors each hold a warm :class:`~whisperpool.engine.TranscriptionEngine`,
  written as the same JSON Lines as ``whisperpool transcribe --json``.

Like the other faces it talks to the engine only. Ray is imported inside the functions
that use it, so this package imports without the ``ray`` extra.
"""
