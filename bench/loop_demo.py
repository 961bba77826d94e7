"""Loop efficacy benchmark (issue 6): `edgeloop demo`'s scenario for several plant seeds, medians.

Each run: fresh demo project, hub, v1 on simulated history, 2 canary + 4 stable real edge runners,
sensor-offset drift at simulated hour 107, the monitor's one retrain on the uploaded ground truth, canary,
promotion, recovery (see edgeloop/demo/run.py). Reports per seed and the median: accuracy before drift,
lowest after, at the end; drift onset -> whole fleet on the new model (simulated hours and wall seconds);
labelled rows uploaded; bytes uploaded (gzip on the wire) vs raw; demo wall time.

    .venv/bin/python bench/loop_demo.py [--seeds 1 2 3]

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.telemetry import switch_off  # noqa: E402

switch_off()

from edgeloop.demo.run import run_demo  # noqa: E402
from edgeloop.demo.workspace import DemoSettings  # noqa: E402

KEYS = (
    ("accuracy before drift", "{:.2%}"),
    ("lowest accuracy after drift", "{:.2%}"),
    ("accuracy at the end", "{:.2%}"),
    ("drift onset -> fleet recovered (simulated h)", "{:.0f}"),
    ("drift onset -> fleet recovered (wall s)", "{:.0f}"),
    ("labelled rows uploaded", "{:,.0f}"),
    ("uploaded / raw", "{:.1%}"),
    ("demo wall time (s)", "{:.0f}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as scratch:
            project = Path(scratch)
            shutil.copy(REPO / "params.yaml", project / "params.yaml")
            result = run_demo(project, DemoSettings(seed=seed), lambda text: None)
            results.append(result)
            print(f"seed {seed}: " + ", ".join(f"{k} {result.get(k)}" for k, _ in KEYS), file=sys.stderr)
    print(f"Command: `.venv/bin/python bench/loop_demo.py --seeds {' '.join(map(str, args.seeds))}`")
    print()
    print("| measure | " + " | ".join(f"seed {s}" for s in args.seeds) + " | median |")
    print("|---|" + "---|" * (len(args.seeds) + 1))
    for key, fmt in KEYS:
        values = [r.get(key) for r in results]
        shown = [fmt.format(v) if isinstance(v, int | float) else "-" for v in values]
        numbers = [v for v in values if isinstance(v, int | float)]
        median = fmt.format(statistics.median(numbers)) if numbers else "-"
        print(f"| {key} | " + " | ".join(shown) + f" | {median} |")


if __name__ == "__main__":
    main()
