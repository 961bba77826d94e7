"""A device update in its own process, for kill -9 tests: ``python -m tests.edge_update_worker STATE STAGED``.

Imports only edge.state (standard library), prints ``ready``, waits for a line on stdin, then takes the
runner lock, recovers the state directory, installs the staged release and activates it, and prints
``done <seconds>``. The test kills it at a random moment after ``go``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edge.state import StateDir


def main(state_path: str, staged: str) -> None:
    state = StateDir(Path(state_path))
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    with state.lock():
        state.recover()
        folder = state.install(Path(staged))
        state.activate(folder.name)
    print(f"done {json.dumps(time.perf_counter() - started)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
