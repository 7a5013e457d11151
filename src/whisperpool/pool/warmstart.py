"""Warm start across restarts: a small JSON file of warm-up timings and worker memory.

The joined, verified model file is reused by :mod:`whisperpool.models` (its stamp); this
file adds what the pool learned about warming workers up, per model configuration (model
path, device, compute type, threads): the last warm-up times and the largest resident
memory. A pool started with the same configuration uses them to size its start-up: a
worker's warm-up deadline becomes four times the recorded warm-up (at least 10 s, at
most ``warmup_timeout_s``), so a hung start is noticed in seconds, and the memory budget
knows a worker's size before any has reported. A missing or damaged file is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEEP = 5  # warm-up times kept per configuration
MIN_DEADLINE_S = 10.0


class WarmStartState:
    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path).expanduser() if path else None
        self._data: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self._data = {k: v for k, v in data.get("configurations", {}).items() if isinstance(v, dict)}
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("ignoring the warm-start file %s: %s", self.path, exc)

    def lookup(self, key: str) -> dict[str, float] | None:
        """``{"warm_up_s": median of the recent ones, "rss_mb": largest}`` or None."""
        entry = self._data.get(key)
        if not entry or not entry.get("warm_up_s"):
            return None
        try:
            return {"warm_up_s": float(statistics.median(entry["warm_up_s"])), "rss_mb": float(entry.get("rss_mb", 0))}
        except (TypeError, ValueError):
            return None

    def warm_up_deadline(self, key: str, configured_s: float) -> float:
        record = self.lookup(key)
        if record is None:
            return configured_s
        return min(configured_s, max(MIN_DEADLINE_S, 4 * record["warm_up_s"]))

    def record(self, key: str, warm_up_s: float, rss_mb: float) -> None:
        if self.path is None:
            return
        entry = self._data.setdefault(key, {})
        entry["warm_up_s"] = ([float(x) for x in entry.get("warm_up_s", [])] + [round(warm_up_s, 3)])[-KEEP:]
        entry["rss_mb"] = round(max(float(entry.get("rss_mb", 0)), rss_mb), 1)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as f:
                json.dump({"version": 1, "configurations": self._data}, f, indent=2)
            os.replace(f.name, self.path)
        except OSError as exc:
            log.warning("cannot write the warm-start file %s: %s", self.path, exc)


__all__ = ["WarmStartState"]
