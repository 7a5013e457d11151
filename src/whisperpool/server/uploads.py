"""Receive a multipart upload by streaming its file part into a private folder.

The file never sits whole in memory, is written under a name the server chooses (mode
0600, in a 0700 folder), stops at the size limit with :class:`UploadTooLarge`, and is
removed when the request ends however it ends (success, error, client disconnect).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from .errors import InvalidParameter, UploadTooLarge

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


@contextlib.asynccontextmanager
async def receive_upload(
    request: Request, folder: Path, *, max_bytes: int, file_field: str = "file"
) -> AsyncIterator[Upload]:
    """Parse the multipart body; yields the upload; removes its file on the way out."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidParameter("the request must be multipart/form-data with a 'file' part", file_field)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + FIELD_SLACK_BYTES:
        raise UploadTooLarge(f"the upload ({length} bytes) is larger than the limit of {max_bytes} bytes")
    receiver = _Receiver(folder, file_field, max_bytes)
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidParameter(f"malformed multipart body: {exc}") from exc
        receiver.close_file()
        yield receiver.upload
    finally:
        receiver.close_file()
        if receiver.upload.path is not None:
            receiver.upload.path.unlink(missing_ok=True)
