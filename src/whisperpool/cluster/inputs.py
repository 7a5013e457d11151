"""What a batch run reads and what it has already written.

:func:`list_inputs` turns files, folders, globs and URIs into the audio files of a run;
:func:`read_done` reads an earlier run's JSON Lines so a run started again skips the
files it has already written (and cuts off a last line left half-written by a stop).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..audio import AUDIO_SUFFIXES
from ..errors import ConfigError, MissingDependency


def is_uri(path: str) -> bool:
    """``s3://bucket/key``, ``gs://...``, ``file:///...``: read through pyarrow's filesystems."""
    return "://" in path


def _audio(name: str) -> bool:
    return Path(name).suffix.lower() in AUDIO_SUFFIXES


def _local(item: str) -> list[str]:
    """A file as given; a folder's audio files (recursively, sorted); a glob's matches."""
    if os.path.isdir(item):
        return sorted(str(f) for f in Path(item).rglob("*") if f.is_file() and _audio(f.name))
    if glob.has_magic(item):
        found: list[str] = []
        for match in sorted(glob.glob(item, recursive=True)):
            found += _local(match) if os.path.isdir(match) else [match] if _audio(match) else []
        return found
    return [item]  # a missing file is reported by the run, as one error record


def _remote(uri: str) -> list[str]:
    """A URI's file, or the audio files under it (recursively, sorted), as URIs."""
    try:
        from pyarrow import fs
    except ImportError as exc:  # pragma: no cover - pyarrow comes with the ray extra
        raise MissingDependency("URIs are read with pyarrow: pip install 'whisperpool[ray]'") from exc
    scheme = uri.split("://", 1)[0]
    filesystem, path = fs.FileSystem.from_uri(uri)
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.Directory:
        infos = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
        return sorted(f"{scheme}://{i.path}" for i in infos if i.type == fs.FileType.File and _audio(i.path))
    return [uri]


def list_inputs(items: Iterable[str]) -> list[str]:
    """The audio files named by ``items`` (files, folders, globs, URIs), each once, in order."""
    files: list[str] = []
    for item in items:
        files += _remote(item) if is_uri(item) else _local(item)
    return list(dict.fromkeys(files))


def read_done(output: Path) -> dict[str, bool]:
    """The files ``output`` already holds a record of, each with whether it failed.

    A last line without its newline (a run stopped mid-write) is cut off, so the next
    run appends whole lines; any other line that is not a record raises
    :class:`~whisperpool.errors.ConfigError` rather than append to a file that is not ours.
    """
    if not output.exists():
        return {}
    data = output.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        with output.open("r+b") as f:
            f.truncate(len(whole))
    done: dict[str, bool] = {}
    for number, line in enumerate(whole.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            done[record["file"]] = "error" in record
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{output}:{number} is not a transcription record; not appending to it") from exc
    return done


__all__ = ["is_uri", "list_inputs", "read_done"]
