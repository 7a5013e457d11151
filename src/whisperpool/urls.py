"""Server addresses as users type them (``127.0.0.1:8000``, ``http://host/``, ``ws://host``),
normalised once for HTTP and for WebSocket clients."""

from __future__ import annotations

REALTIME_PATH = "/v1/realtime?intent=transcription"
_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def _split(url: str) -> tuple[str | None, str]:
    url = url.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None, url
    if scheme.lower() not in _SCHEMES:
        raise ValueError(f"a server URL starts with http://, https://, ws:// or wss://, got {url!r}")
    return scheme.lower(), rest


def http_url(url: str) -> str:
    """``url`` as an ``http(s)://`` base URL without a trailing slash (``ws`` -> ``http``)."""
    scheme, rest = _split(url)
    secure = scheme in ("https", "wss")
    return f"{'https' if secure else 'http'}://{rest}"


def ws_url(url: str, path: str = REALTIME_PATH) -> str:
    """``url`` as a ``ws(s)://`` URL, with ``path`` added unless the URL already ends in it."""
    scheme, rest = _split(url)
    endpoint = path.partition("?")[0]
    if endpoint not in rest:
        rest += path
    return f"{_SCHEMES[scheme or 'http']}://{rest}"


__all__ = ["REALTIME_PATH", "http_url", "ws_url"]
