"""``whisperpool load --abuse``: the attacks of issue 13 replayed against a server, while it must keep serving."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from ..testing import silent_flac
from .options import LoadOptions
from .server import _wait_ready, clips
from .streams import REALTIME, StreamProbes

TRANSCRIBE = "/v1/audio/transcriptions"
UPLOAD_PATH_MARKERS = ("whisperpool-uploads-", ".upload")  # what a leaked server path looks like


def rss_mb(pid: int | None) -> float | None:
    """The resident memory of ``pid`` in MiB (Linux), or None."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _answer(r: httpx.Response) -> str:
    """``"400 invalid_parameter"``: the status and OpenAI error code of an answer."""
    try:
        code = r.json().get("error", {}).get("code") or ""
    except ValueError:
        code = ""
    return f"{r.status_code} {code}".strip()


def _raw_answer(data: bytes) -> str:
    """The status and error code of a raw HTTP answer; ``"closed"`` if none came."""
    if not data.startswith(b"HTTP/1.1 "):
        return "closed"
    status = data[9:12].decode()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        code = json.loads(body).get("error", {}).get("code") or ""
    except ValueError:
        code = ""
    return f"{status} {code}".strip()


class _Abuse(StreamProbes):
    """The probes, each bounded in count and time; ``normal`` is the clip a normal request sends."""

    def __init__(self, url: str, options: LoadOptions, normal: bytes, wyoming_port: int | None = None) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.ws_url = url.replace("http", "ws", 1).rstrip("/") + REALTIME
        self.wyoming_port = wyoming_port
        self.options, self.normal = options, normal
        self.wait_s = options.read_timeout_s + 5  # the longest a slow probe waits for the server's answer
        self.client = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(60.0, connect=10.0))

    async def close(self) -> None:
        await self.client.aclose()

    async def normal_request(self) -> tuple[str, float]:
        started = time.perf_counter()
        try:
            r = await self.client.post(
                TRANSCRIBE, files={"file": ("normal.wav", self.normal)}, data={"model": "whisper-1"}
            )
        except httpx.HTTPError as exc:
            return f"lost {type(exc).__name__}", time.perf_counter() - started
        ok = r.status_code == 200 and bool(r.json().get("text"))
        return ("200" if ok else _answer(r)), time.perf_counter() - started

    async def _post_many(self, make_request) -> list[str]:
        answers = []
        for _ in range(self.options.probe_count):
            try:
                answers.append(_answer(await make_request()))
            except httpx.HTTPError as exc:
                answers.append(f"lost {type(exc).__name__}")
        return answers

    async def bad_language(self) -> list[str]:
        return await self._post_many(
            lambda: self.client.post(TRANSCRIBE, files={"file": ("a.wav", self.normal)}, data={"language": "xx"})
        )

    async def nan_temperature(self) -> list[str]:
        return await self._post_many(
            lambda: self.client.post(TRANSCRIBE, files={"file": ("a.wav", self.normal)}, data={"temperature": "nan"})
        )

    async def path_leak(self) -> list[str]:
        answers = []
        for _ in range(self.options.probe_count):
            r = await self.client.post(TRANSCRIBE, files={"file": ("probe.wav", b"not audio, only text")})
            leaked = any(marker in r.text for marker in UPLOAD_PATH_MARKERS)
            answers.append(_answer(r) + (" LEAKED A SERVER PATH" if leaked else ""))
        return answers

    async def tiny_flac_hours(self) -> list[str]:
        # decodes past the server's max_audio_s, with nothing in its header to say so
        data = silent_flac(int(self.options.max_audio_s * 1.2) + 1, declare_length=False)
        answers = []
        for _ in range(min(self.options.probe_count, 3)):
            r = await self.client.post(TRANSCRIBE, files={"file": ("tiny.flac", data)})
            answers.append(_answer(r))
        return answers

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)

    async def _partial_upload(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._open()
        writer.write(
            b"POST " + TRANSCRIBE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n\r\n' + b"\0" * 20_000
        )
        await writer.drain()
        return reader, writer

    async def _read_answer(self, reader: asyncio.StreamReader) -> str:
        try:
            data = await asyncio.wait_for(reader.read(-1), self.wait_s)  # the server closes after its answer
        except asyncio.TimeoutError:
            return "no answer (held)"
        except OSError:
            return "closed"
        return _raw_answer(data)

    async def disconnect_mid_upload(self) -> list[str]:
        answers = []
        for _ in range(self.options.probe_count):
            _, writer = await self._partial_upload()
            await asyncio.sleep(0.05)
            writer.transport.abort()  # gone mid-upload: the server's answer (499) goes nowhere
            answers.append("left mid-upload")
        return answers

    async def slow_uploads(self) -> list[str]:
        count = max(1, min(self.options.probe_count, self.options.max_uploads // 2))  # leave slots for others
        streams = [await self._partial_upload() for _ in range(count)]
        answers = await asyncio.gather(*(self._read_answer(reader) for reader, _ in streams))
        for _, writer in streams:
            writer.close()
        return list(answers)

    async def slow_headers(self) -> list[str]:
        count = max(1, min(self.options.probe_count, self.options.max_connections // 4))

        async def drip() -> str:
            reader, writer = await self._open()
            line = b"POST " + TRANSCRIBE.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
            answer = asyncio.ensure_future(self._read_answer(reader))
            deadline = time.monotonic() + self.wait_s
            i = 0
            while not answer.done() and time.monotonic() < deadline:
                writer.write(line[i : i + 1] if i < len(line) else b"a")  # never ends its headers
                i += 1
                try:
                    await writer.drain()
                except OSError:
                    break
                await asyncio.sleep(0.2)
            result = await answer
            writer.close()
            return result

        return list(await asyncio.gather(*(drip() for _ in range(count))))

    async def idle_connections(self) -> list[str]:
        count = max(1, self.options.max_connections // 2)
        streams = [await self._open() for _ in range(count)]
        answers = await asyncio.gather(*(self._read_answer(reader) for reader, _ in streams))
        for _, writer in streams:
            writer.close()
        return list(answers)

    async def connection_burst(self) -> list[str]:
        count = self.options.max_connections + 16

        async def one() -> str:
            try:
                reader, writer = await self._open()
            except (OSError, asyncio.TimeoutError):
                return "refused"
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = await self._read_answer(reader)
            writer.close()
            return answer.split(" ")[0]

        return list(await asyncio.gather(*(one() for _ in range(count))))

    # --- the live streams: Realtime (WebSocket) and Wyoming (TCP) ----------------------


P95_TARGET = 2.0  # a normal request's p95 during a probe, as a multiple of idle: reported, not an exit code

# probe -> the answers it may get (by prefix); anything else is unexpected
EXPECTED: dict[str, tuple[str, ...]] = {
    "bad_language": ("400 invalid_parameter",),
    "nan_temperature": ("400 invalid_parameter",),
    "path_leak": ("400 invalid_audio",),
    "tiny_flac_hours": ("400 audio_too_long",),
    "disconnect_mid_upload": ("left mid-upload",),
    "slow_uploads": ("408 upload_timeout",),
    "slow_headers": ("408",),
    "idle_connections": ("408",),
    "connection_burst": ("200", "503"),
    "realtime_bad_events": ("error invalid_type", "error invalid_value", "error too_deep", "session alive"),
    "realtime_flood": ("error rate_limited", "error input_audio_buffer_too_large", "completed", "session alive"),
    "wyoming_flood": ("error rate_limited", "error input_audio_buffer_too_large", "transcript"),
    "wyoming_huge_payload": ("error too_large", "closed"),
    "realtime_sessions": ("created", "error session_limit"),
}
# probe -> the answers it must get at least once (each: one of these)
REFUSED = ("error rate_limited", "error input_audio_buffer_too_large")
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "realtime_bad_events": (("session alive",),),
    "realtime_flood": (REFUSED, ("completed",), ("session alive",)),
    "wyoming_flood": (REFUSED, ("transcript",)),
    "wyoming_huge_payload": (("error too_large",), ("closed",)),
    "realtime_sessions": (("created",), ("error session_limit",)),
}
WYOMING_PROBES = ("wyoming_flood", "wyoming_huge_payload")  # only against a server started here


async def run_abuse(
    url: str, options: LoadOptions, server_pid: int | None, wyoming_port: int | None = None
) -> dict[str, Any]:
    """Each probe against a trickle of normal requests; see the module docstring.
    The Wyoming probes run only with ``wyoming_port`` (a server started by :func:`run`)."""
    normal = clips()["3s"]
    abuse = _Abuse(url, options, normal, wyoming_port)
    deadline = time.monotonic() + options.limit_s
    try:
        await _wait_ready(abuse.client)
        for _ in range(3):  # warm the path
            await abuse.normal_request()
        idle = [await abuse.normal_request() for _ in range(max(10, options.probe_count))]
        idle_p95 = _p95([t for a, t in idle if a == "200"])
        rss_before = rss_mb(server_pid)
        statuses_before = await _status_counts(abuse.client)
        probes = []
        for name in EXPECTED:
            if time.monotonic() > deadline:
                break
            if name in WYOMING_PROBES and wyoming_port is None:
                continue
            probes.append(await _probe(abuse, name, idle_p95, server_pid))
        after = [await abuse.normal_request() for _ in range(3)]
        serving = all(a == "200" for a, _ in after)
        statuses_after = await _status_counts(abuse.client)
    finally:
        await abuse.close()
    unexpected = [p["probe"] for p in probes if p["unexpected"]]
    answered = (
        {  # what the server's own metrics counted during the probes (None: /metrics not readable)
            status: statuses_after[status] - statuses_before.get(status, 0)
            for status in statuses_after
            if statuses_after[status] != statuses_before.get(status, 0)
        }
        if statuses_after is not None and statuses_before is not None
        else None
    )
    if answered and any(status.startswith("5") and status != "503" for status in answered):
        unexpected.append("server errors (5xx) in the metrics")
    return {
        "url": url,
        "idle": {"requests": len(idle), "p50_s": _percentile([t for _, t in idle], 50), "p95_s": idle_p95},
        "probes": probes,
        "server_counted": answered,
        "rss_mb": {"before": rss_before, "after": rss_mb(server_pid)},
        "kept_serving": serving and all(p["normal_ok"] > 0 for p in probes),
        "unexpected": unexpected,
        "ok": serving and not unexpected and all(p["normal_ok"] > 0 for p in probes),
    }


async def _status_counts(client: httpx.AsyncClient) -> dict[str, float] | None:
    """Requests the server counted, by status (``whisperpool_http_requests_total``); None if unreadable."""
    try:
        r = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    counts: dict[str, float] = {}
    for line in r.text.splitlines():
        if line.startswith("whisperpool_http_requests_total{") and 'status="' in line:
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return counts


async def _probe(abuse: _Abuse, name: str, idle_p95: float, server_pid: int | None = None) -> dict[str, Any]:
    """Run one probe while normal requests go on (at least one, and for at least probe_s)."""
    rss_before = rss_mb(server_pid)
    done = asyncio.Event()
    normals: list[tuple[str, float]] = []

    async def trickle() -> None:
        started = time.monotonic()
        while not (done.is_set() and (normals and time.monotonic() - started >= abuse.options.probe_s)):
            normals.append(await abuse.normal_request())
            if len(normals) >= 10_000 or time.monotonic() - started > abuse.options.probe_s + abuse.wait_s + 60:
                return
            await asyncio.sleep(0.05)

    background = asyncio.ensure_future(trickle())
    started = time.perf_counter()
    try:
        answers = await asyncio.wait_for(getattr(abuse, name)(), abuse.wait_s + 120)
    except asyncio.TimeoutError:
        answers = ["probe timed out"]
    took = time.perf_counter() - started
    done.set()
    await background
    counted: dict[str, int] = {}
    for answer in answers:
        counted[answer] = counted.get(answer, 0) + 1
    ok_times = [t for a, t in normals if a == "200"]
    p95 = _p95(ok_times)
    expected = EXPECTED[name]
    missing = [" or ".join(group) for group in REQUIRED.get(name, ()) if not any(a in counted for a in group)]
    return {
        "probe": name,
        "sent": len(answers),
        "answers": counted,
        "missing": missing,
        "unexpected": any(not a.startswith(expected) or "LEAKED" in a for a in answers) or bool(missing),
        "probe_s": round(took, 2),
        "normal_requests": len(normals),
        "normal_ok": len(ok_times),
        "normal_other": {a: sum(1 for b, _ in normals if b == a) for a in {a for a, _ in normals if a != "200"}},
        "normal_p95_s": p95,
        "p95_ratio": p95 / idle_p95 if idle_p95 > 0 else float("nan"),
        "within_target": bool(p95 <= P95_TARGET * idle_p95),
        "rss_mb": {"before": rss_before, "after": rss_mb(server_pid)},
    }


def _percentile(values: list[float], q: int) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _p95(values: list[float]) -> float:
    return _percentile(values, 95)


def report_abuse(result: dict[str, Any], out: Console) -> None:
    idle = result["idle"]
    table = Table(title=f"abuse probes (idle p50 {idle['p50_s'] * 1000:.0f} ms, p95 {idle['p95_s'] * 1000:.0f} ms)")
    others = any(p["normal_other"] for p in result["probes"])
    columns = ("probe", "answers", "normal ok") + (("normal other",) if others else ())
    columns += ("p95 ms", "/ idle", "RSS MiB", "")
    for col in columns:
        left = col in ("probe", "answers", "normal other")
        table.add_column(col, justify="left" if left else "right", no_wrap=col in ("probe", "/ idle", "RSS MiB"))
    for p in result["probes"]:
        answers = ", ".join(f"{n}x {a}" for a, n in sorted(p["answers"].items()))
        other = (", ".join(f"{n}x {a}" for a, n in sorted(p["normal_other"].items())) or "-",) if others else ()
        before, after = p["rss_mb"]["before"], p["rss_mb"]["after"]
        rss = f"{before:.0f} -> {after:.0f}" if before is not None and after is not None else "-"
        verdict = "UNEXPECTED" if p["unexpected"] else "ok"
        table.add_row(
            p["probe"], answers, str(p["normal_ok"]), *other, f"{p['normal_p95_s'] * 1000:.0f}",
            f"{p['p95_ratio']:.2f}" + ("" if p["within_target"] else " (>2x)"), rss,
            verdict + (f" (missing: {', '.join(p['missing'])})" if p["missing"] else ""),
        )  # fmt: skip
    out.print(table)
    rss = result["rss_mb"]
    if rss["before"] is not None:
        out.print(f"server RSS: {rss['before']:.0f} MiB before the probes, {rss['after'] or 0:.0f} MiB after")
    if result["server_counted"] is not None:
        counted = ", ".join(f"{n:g}x {status}" for status, n in sorted(result["server_counted"].items()))
        out.print(f"the server counted: {counted}")
    verdict = "kept serving" if result["kept_serving"] else "STOPPED SERVING"
    out.print(f"{verdict}; unexpected answers: {', '.join(result['unexpected']) or 'none'}")
