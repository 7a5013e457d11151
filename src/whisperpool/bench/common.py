"""What the benchmark suites share: the clips, targets as ratios, summary statistics."""

from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from ..config import available_cores


def _clips_folder() -> Path:
    """The example clips, shipped as package data of ``whisperpool.bench`` (``clips/``)."""
    folder = resources.files(__package__) / "clips"
    if not isinstance(folder, Path) or not (folder / "texts.json").is_file():
        raise FileNotFoundError(f"the example clips are not installed with whisperpool: {folder}")
    return folder


CLIPS = _clips_folder()  # fox.wav, weather.wav, ... and texts.json; short/ the 1-5 s commands


@dataclass
class Target:
    """A target as a ratio (or a small absolute figure) measured in one run."""

    name: str
    value: float
    limit: float
    higher_is_better: bool
    unit: str = "x"

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "limit": self.limit,
            "higher_is_better": self.higher_is_better,
            "met": self.met,
        }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def header() -> dict[str, Any]:
    """When and where a result was measured."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cores": available_cores(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
    }


def table(title: str, columns: tuple[str, ...]) -> Table:
    """A results table: the first column (what was measured) left, the figures right."""
    t = Table(title=title)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    return t
