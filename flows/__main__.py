"""``python -m flows STAGE``: run one pipeline stage from params.yaml in the current folder (DVC's driver).

Prints the stage summary as JSON on stdout. User mistakes end with one line on stderr and exit 2; a
stage that cannot produce a trustworthy output exits 1 with its reason. Leaves out Prefect (the same
stages as one flow: ``flows.orchestration.retrain``) and the loop log (``dvc repro`` is a build, not a
retrain decision).
"""

from __future__ import annotations

import argparse
import json
import sys

from edge.telemetry import switch_off


def main(argv: list[str] | None = None) -> int:
    switch_off()
    from edge.contracts.errors import UserError
    from edge.contracts.layout import Paths
    from flows.params import load_params
    from flows.stages import STAGES, StageError, run_stage

    parser = argparse.ArgumentParser(prog="python -m flows", description="Run one edgeloop pipeline stage.")
    parser.add_argument("stage", choices=STAGES, help="stage to run")
    parser.add_argument("--root", default=".", help="project folder holding params.yaml and data/")
    args = parser.parse_args(argv)
    paths = Paths.at(args.root)
    try:
        summary = run_stage(args.stage, load_params(paths.params), paths)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StageError as exc:
        print(f"{args.stage} failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
