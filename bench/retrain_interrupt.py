"""Benchmark Ctrl-C during ``edgeloop retrain``: seconds from SIGINT to the process's end, beside its floor.

Each repeat starts ``edgeloop retrain`` (a temporary Prefect server, as a user's first try has) on a small
project (2 devices x 1,500 simulated rows) in its own session, waits until its stage progress says
``--after`` finished (default ``simulate``: ingest is then under way), and sends SIGINT to the whole process
group, as a terminal's Ctrl-C does. Timed: SIGINT to exit. Also recorded: the exit code and the last line.
Floor, in the same run: a Python child that has imported the same CLI module (``edgeloop.cli``) and sleeps,
interrupted the same way (Python's default handler: KeyboardInterrupt, exit), i.e. signal delivery plus
the end of a process of that size. Medians and maxima over ``--repeat``. A benchmark, not a test: it
asserts nothing.

    .venv/bin/python bench/retrain_interrupt.py --repeat 3

``--code DIR`` runs ``python -m edgeloop.cli`` with ``PYTHONPATH=DIR`` instead (e.g. an exported older commit,
``git archive COMMIT | tar -x -C DIR``), to time the behaviour before this change; ``--timeout`` bounds it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

EDGELOOP = str(Path(sys.executable).parent / "edgeloop")
FLOOR_CHILD = "import edgeloop.cli, sys, time\nprint('ready', flush=True)\ntime.sleep(600)\n"


def _project(root: Path) -> Path:
    from edgeloop.testkit.project import override, repo_params_raw

    root.mkdir(parents=True)
    raw = override(repo_params_raw(), {"simulate.devices": 2, "simulate.rows_per_device": 1500})
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def _interrupt(args: list[str], ready: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 60) -> tuple[float, int, str, int]:
    """Start ``args``, wait for a stderr/stdout line containing ``ready``, SIGINT the group: (seconds to exit,
    exit code, last output line, output lines after the SIGINT)."""
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env=env)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if ready in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not seen.wait(600):
        process.kill()
        raise RuntimeError(f"never saw {ready!r}: {''.join(lines)}")
    before = len(lines)
    started = time.perf_counter()
    os.killpg(process.pid, signal.SIGINT)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
    took = time.perf_counter() - started
    reader.join(2)
    said = [line.strip() for line in lines if line.strip()]
    return took, code, said[-1] if said else "", len(lines) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--after", default="simulate", help="stage whose 'done' line triggers the SIGINT")
    parser.add_argument("--code", type=Path, help="run `python -m edgeloop.cli` from this source tree instead")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the end after SIGINT")
    options = parser.parse_args()
    command, env = [EDGELOOP], None
    if options.code:
        command = [sys.executable, "-m", "edgeloop.cli"]
        env = {**os.environ, "PYTHONPATH": str(options.code.resolve())}
    stops, floors, codes, after_lines, last = [], [], [], [], ""
    with tempfile.TemporaryDirectory(prefix="bench-interrupt-") as scratch:
        for index in range(options.repeat):
            root = _project(Path(scratch) / f"p{index}")
            took, code, last, more = _interrupt([*command, "retrain", "--root", str(root)], f"done {options.after}",
                                                root, env, options.timeout)
            stops.append(took)
            codes.append(code)
            after_lines.append(more)
            took, _, _, _ = _interrupt([sys.executable, "-c", FLOOR_CHILD], "ready", root)
            floors.append(took)
    print(json.dumps({
        "code": str(options.code or "this tree"), "repeat": options.repeat, "after": options.after,
        "exit_codes": codes, "output_lines_after_sigint": after_lines, "last_line": last,
        "retrain_stop_s": {"median": round(statistics.median(stops), 3), "max": round(max(stops), 3),
                           "all": [round(s, 3) for s in stops]},
        "floor_s": {"median": round(statistics.median(floors), 3), "max": round(max(floors), 3)},
        "load_average": os.getloadavg(),
    }, indent=2))


if __name__ == "__main__":
    main()
