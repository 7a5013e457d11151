"""Receive a multipart upload by streaming its file part into a private folder.

The file never sits whole in memory, is written under a name the server chooses (mode
0600, in a 0700 folder), stops at the size limit with :class:`UploadTooLarge`, and is
removed when the request ends however it ends (success, error, client disconnect).
A body that takes longer than the read timeout is cut with :class:`UploadTimeout`; a
client that leaves mid-upload is :class:`ClientDisconnected` (499, logged at info);
at most ``max_uploads`` run at once (:class:`UploadSlots`, 503 past it). Error messages
name the client's file name, never the server's path.

Each server's folder is ``<tempdir>/whisperpool-uploads-<pid>-<random>``: a server that
was SIGKILLed leaves its folder behind, and the next server to start removes every such
folder whose process is gone (:func:`make_upload_dir`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from ..errors import ClientDisconnected, QueueFull, UploadTimeout, WhisperPoolError
from .errors import InvalidParameter, UploadTooLarge

log = logging.getLogger(__name__)

UPLOAD_DIR_PREFIX = "whisperpool-uploads-"

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 64
FIELD_SLACK_BYTES = MAX_FIELDS * 1024  # what form fields may add to Content-Length


@dataclass
class Upload:
    fields: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    size: int = 0

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


class _Receiver:
    """python-multipart callbacks: headers, fields into memory, the file part onto disk."""

    def __init__(self, folder: Path, file_field: str, max_bytes: int) -> None:
        self.folder, self.file_field, self.max_bytes = folder, file_field, max_bytes
        self.upload = Upload()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._fd: int | None = None
        self._fields = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_header_field", self._header_field + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_header_value", self._header_value + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._is_file, self._value = {}, None, False, bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._is_file = filename is not None and self._name == self.file_field
        if self._is_file:
            if self.upload.path is not None:
                raise InvalidParameter(f"send one '{self.file_field}' part, not several", self.file_field)
            path = self.folder / f"{uuid.uuid4().hex}.upload"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self.upload.path = path
            self.upload.filename = os.path.basename(filename.decode("utf-8", "replace")) or "upload"
        else:
            self._fields += 1
            if self._fields > MAX_FIELDS:
                raise InvalidParameter(f"too many form fields (more than {MAX_FIELDS})")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.upload.size += len(chunk)
            if self.upload.size > self.max_bytes:
                raise UploadTooLarge(f"the upload is larger than the limit of {self.max_bytes} bytes")
            assert self._fd is not None
            os.write(self._fd, chunk)
        else:
            self._value += chunk
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidParameter(f"form field {self._name!r} is too long", self._name)

    def _part_end(self) -> None:
        if self._is_file:
            self.close_file()
        elif self._name:
            self.upload.fields.setdefault(self._name, []).append(self._value.decode("utf-8", "replace"))

    def close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class UploadSlots:
    """At most ``limit`` uploads received or decoded at once; one more is refused at once.

    Used from one event loop only, so a counter is enough. Refusing (503, retry) rather
    than waiting keeps a flood of uploads from holding connections and disk.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            raise QueueFull(f"too many uploads in progress (max_uploads={self.limit}); retry shortly")
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1


@contextlib.asynccontextmanager
async def receive_upload(
    request: Request,
    folder: Path,
    *,
    max_bytes: int,
    file_field: str = "file",
    timeout_s: float | None = None,
    slots: UploadSlots | None = None,
) -> AsyncIterator[Upload]:
    """Parse the multipart body within ``timeout_s``; yields the upload; removes its file on the way out."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidParameter("the request must be multipart/form-data with a 'file' part", file_field)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + FIELD_SLACK_BYTES:
        raise UploadTooLarge(f"the upload ({length} bytes) is larger than the limit of {max_bytes} bytes")
    receiver = _Receiver(folder, file_field, max_bytes)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())

    async def read_body() -> None:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()

    with slots.hold() if slots is not None else contextlib.nullcontext():
        try:
            try:
                await asyncio.wait_for(read_body(), timeout_s)
            except MultipartParseError as exc:
                raise InvalidParameter(f"malformed multipart body: {exc}") from exc
            except asyncio.TimeoutError:
                raise UploadTimeout(
                    f"the request body did not arrive within {timeout_s:g} s (read_timeout_s); "
                    f"{receiver.upload.size} bytes of the file came"
                ) from None
            except ClientDisconnect:
                raise ClientDisconnected(
                    f"the client disconnected during its upload ({receiver.upload.size} bytes of the file came)"
                ) from None
            receiver.close_file()
            yield receiver.upload
        except WhisperPoolError as exc:
            _scrub(exc, folder, receiver.upload)
            raise
        finally:
            receiver.close_file()
            if receiver.upload.path is not None:
                receiver.upload.path.unlink(missing_ok=True)


def _scrub(exc: WhisperPoolError, folder: Path, upload: Upload) -> None:
    """Put the client's file name where a message shows the server's path (a decoder may)."""
    message = str(exc)
    if str(folder) not in message:
        return
    if upload.path is not None:
        message = message.replace(str(upload.path), upload.filename or "upload")
    exc.args = (message.replace(str(folder), "<upload folder>"),)


def make_upload_dir(parent: Path | None = None) -> Path:
    """A new private folder (0700) for this process's uploads, under ``parent`` (the
    temporary folder by default), after removing the folders of servers that are gone."""
    parent = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    for stale in remove_stale_upload_dirs(parent):
        log.info("removed the upload folder of a server that is gone: %s", stale)
    return Path(tempfile.mkdtemp(prefix=f"{UPLOAD_DIR_PREFIX}{os.getpid()}-", dir=parent))


def remove_stale_upload_dirs(parent: Path) -> list[Path]:
    """Remove ``whisperpool-uploads-<pid>-*`` folders of ours whose process is gone."""
    removed = []
    for entry in parent.glob(f"{UPLOAD_DIR_PREFIX}*-*"):
        pid, sep, _ = entry.name.removeprefix(UPLOAD_DIR_PREFIX).partition("-")
        if not (sep and pid.isdigit()):
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or _alive(int(pid)):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not a pid at all: leave it
    return True
