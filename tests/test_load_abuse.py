"""``whisperpool load --abuse`` stays working: a tiny run on the fake backend (bounded).

It starts its own ``whisperpool serve`` (fake backend) on a free loopback port with
Wyoming on another, replays every probe (HTTP, Realtime, Wyoming) with small counts, and
must find every answer expected and the server serving.
"""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from whisperpool.errors import ConfigError
from whisperpool.loadtest import EXPECTED, LoadOptions, _raw_answer, run


@pytest.mark.timeout(180)
def test_abuse_run_on_the_fake_backend_reports_every_probe_and_the_server_kept_serving(tmp_path):
    options = LoadOptions(
        abuse=True,
        fake=True,
        workers=1,
        probe_s=0.2,
        probe_count=2,
        read_timeout_s=1.0,
        max_connections=16,
        max_uploads=4,
        max_audio_s=30,
        stream_max_sessions=2,
        limit_s=150,
        output=tmp_path / "abuse.json",
    )
    buf = io.StringIO()
    result = run(options, Console(file=buf, width=160))
    assert [p["probe"] for p in result["probes"]] == list(EXPECTED)
    assert result["ok"] and result["kept_serving"] and not result["unexpected"], buf.getvalue()
    probes = {p["probe"]: p for p in result["probes"]}
    assert probes["bad_language"]["answers"] == {"400 invalid_parameter": 2}
    assert probes["nan_temperature"]["answers"] == {"400 invalid_parameter": 2}
    assert probes["tiny_flac_hours"]["answers"] == {"400 audio_too_long": 2}
    assert probes["slow_uploads"]["answers"] == {"408 upload_timeout": 2}
    assert probes["idle_connections"]["answers"] == {"408": 8}
    assert all(p["normal_ok"] > 0 for p in result["probes"])
    # the live streams: each abuse answered, each session kept, the caps held
    bad = probes["realtime_bad_events"]["answers"]
    assert bad == {"error invalid_type": 3, "error invalid_value": 1, "error too_deep": 1, "session alive": 1}, bad
    flood = probes["realtime_flood"]["answers"]  # 10 appends of 15 s at once: 20 s burst, 30 s buffer
    assert flood["completed"] == 1 and flood["session alive"] == 1 and flood["error rate_limited"] >= 5, flood
    assert probes["realtime_sessions"]["answers"] == {"created": 2, "error session_limit": 2}
    wyoming = probes["wyoming_flood"]["answers"]
    assert wyoming == {"error input_audio_buffer_too_large": 9, "transcript": 1}, wyoming  # 16 s chunks
    assert probes["wyoming_huge_payload"]["answers"] == {"error too_large": 2, "closed": 2}
    assert all(p["rss_mb"]["after"] - p["rss_mb"]["before"] < 200 for p in result["probes"])
    counted = result["server_counted"]
    assert counted.get("499") == 2 and not any(s.startswith("5") and s != "503" for s in counted)
    assert result["rss_mb"]["before"] > 0
    assert json.loads(options.output.read_text())["ok"] is True
    assert "kept serving" in buf.getvalue() and "slow_uploads" in buf.getvalue()


def test_raw_answers_and_options_are_checked():
    assert _raw_answer(b'HTTP/1.1 408 Request Timeout\r\n\r\n{"error": {"code": "upload_timeout"}}') == (
        "408 upload_timeout"
    )
    assert _raw_answer(b"HTTP/1.1 503 Service Unavailable\r\n\r\nService Unavailable") == "503"
    assert _raw_answer(b"") == "closed"
    with pytest.raises(ConfigError, match="LoadOptions.probe_s"):
        LoadOptions(abuse=True, probe_s=0)
    with pytest.raises(ConfigError, match="loopback"):
        LoadOptions(abuse=True, url="http://example.com:8000")
