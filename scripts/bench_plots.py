"""Redraw every benchmark plot from the committed JSON results.

python scripts/bench_plots.py            # benchmarks/results/SUITE.json -> SUITE.png, and docs/img/bench-SUITE.png

Each suite's PNG goes beside its JSON (what ``whisperpool bench`` writes itself) and is
copied to ``docs/img/bench-SUITE.png`` for docs/benchmarks.md (MkDocs serves only docs/).
A suite without a JSON result yet is skipped with a note.
"""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from whisperpool.bench import SUITES  # noqa: E402
from whisperpool.bench.plots import plot  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DOCS_IMG = ROOT / "docs" / "img"


def main() -> int:
    for suite in SUITES:
        source = RESULTS / f"{suite}.json"
        if not source.is_file():
            print(f"{suite}: no {source.relative_to(ROOT)} yet, skipped")
            continue
        png = plot(suite, json.loads(source.read_text()), source.with_suffix(".png"))
        if png is None:
            print("matplotlib is not installed: pip install -e '.[bench]'", file=sys.stderr)
            return 1
        copy = DOCS_IMG / f"bench-{suite}.png"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, copy)
        print(f"{suite}: {png.relative_to(ROOT)} ({png.stat().st_size // 1024} KiB), {copy.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
