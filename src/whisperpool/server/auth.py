"""The API-key check, once for HTTP requests and WebSocket handshakes."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

# Browsers cannot set headers on a WebSocket; OpenAI's clients send the key as a subprotocol.
KEY_SUBPROTOCOL = "openai-insecure-api-key."


def offered_key(connection: HTTPConnection) -> str:
    """The key a request or handshake offers: ``Authorization: Bearer KEY``, or on a
    WebSocket the ``openai-insecure-api-key.KEY`` subprotocol; empty if none."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    offered = token.strip() if scheme.lower() == "bearer" else ""
    for proto in connection.scope.get("subprotocols", []):
        if proto.startswith(KEY_SUBPROTOCOL):
            offered = proto.removeprefix(KEY_SUBPROTOCOL)
    return offered


def authorized(connection: HTTPConnection, api_key: str | None) -> bool:
    """True if no key is required or ``connection`` offers the right one (constant time)."""
    if api_key is None:
        return True
    return hmac.compare_digest(offered_key(connection).encode(), api_key.encode())


__all__ = ["KEY_SUBPROTOCOL", "authorized", "offered_key"]
