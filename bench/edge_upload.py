"""Ground-truth upload benchmark (issue 5): how much of a labelled stream the edge sends back, and what it costs.

The default model (HistGradientBoosting with params.yaml's hgb settings, trained on simulator data as in
bench/edge_inference.py, exported with flows.stages.export, loaded by edge.inference) predicts a fresh
simulated stream (other seed, later dates); every row then gets its true label (feedback), goes through
the upload filter (edge.upload_filter, default UploadPolicy), and selected rows are built
(edge.ground_truth), spooled (edge.spool, SQLite WAL, synchronous=FULL) and uploaded in CSV batches of
500 rows by edge.uploader to a REAL hub (uvicorn on 127.0.0.1, edgeloop.testkit.hub), which lands them.

Reports: raw bytes of every row seen (CSV of features + label, same encoder), bytes uploaded (the
batch bodies the hub stored), their ratio (target <= 10 %), the share of labelled mistakes kept (must
be 100 %: counted in the landed files), rows per reason, and the time spent per stage.

    .venv/bin/python bench/edge_upload.py

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import csv
import io
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* build the manifest and run the hub

from edge.telemetry import switch_off

switch_off()

import numpy as np  # noqa: E402

from bench.default_model import trained, write_release  # noqa: E402
from edge.ground_truth import UploadColumns, build_row, encode_csv  # noqa: E402
from edge.hub_client import HubClient  # noqa: E402
from edge.inference import Predictor  # noqa: E402
from edge.spool import Spool, SpoolEntry  # noqa: E402
from edge.upload_filter import UploadPolicy, select  # noqa: E402
from edge.uploader import Uploader  # noqa: E402
from edgeloop.testkit.hub import running_hub  # noqa: E402
from hub.registry import add_device  # noqa: E402
from simulator.fleet import simulate_fleet  # noqa: E402
from simulator.plant import LABEL_COLUMN, SENSOR_COLUMNS  # noqa: E402

DEVICES = 4
TRAIN_ROWS = 10_000  # per device
STREAM_ROWS = 10_000  # per device
BATCH_ROWS = 500
SINGLE_PUTS = 300  # one-row transactions timed, as the runner puts one row per feedback


def build_predictor(folder: Path) -> tuple[Predictor, int]:
    """The default model's release in ``folder``, loaded; and how many rows it was trained on."""
    return Predictor.from_folder(write_release(folder)), len(trained()[1])


def main() -> None:
    policy = UploadPolicy()
    columns = UploadColumns()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "release").mkdir()
        predictor, trained_on = build_predictor(root / "release")
        manifest = predictor.manifest
        raw_columns = [*manifest.feature_names, manifest.label]
        raw_bytes = seen = mistakes = wire_bytes = 0
        reasons: Counter[str] = Counter()
        timings = Counter[str]()
        with running_hub(root / "hub") as hub:
            for device, frame in simulate_fleet(DEVICES, STREAM_ROWS, 1, "2026-02-01", 60.0):
                token = add_device(hub.app.state.sessions, device, "canary")
                spool = Spool(root / f"{device}.spool.db", 256 << 20)
                x = frame[list(SENSOR_COLUMNS)].to_numpy(dtype=np.float64)
                labels = frame[LABEL_COLUMN].astype(int).tolist()
                t0 = time.perf_counter()
                predictions = predictor.predict_batch(x, frame["event_id"].tolist())
                timings["predict"] += time.perf_counter() - t0
                raw_rows = []
                t0 = time.perf_counter()
                chosen = []
                for i, (pred, label) in enumerate(zip(predictions, labels, strict=True)):
                    values = [None if v != v else float(v) for v in x[i]]
                    raw_rows.append(dict(zip(raw_columns, [*values, label], strict=True)))
                    mistakes += pred.label != label
                    selection = select(policy, pred, label, device, manifest, values)
                    if selection is not None:
                        reasons[selection.reason] += 1
                        row = build_row(manifest, pred, values, label, frame["event_time"].iloc[i].to_pydatetime(),
                                        device, {}, selection, columns, policy.local_only)
                        chosen.append(SpoolEntry(selection.reason, row))
                timings["filter + build"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                spool.put(chosen)  # one durable transaction per device's stream here; the runner puts per feedback
                timings["spool put"] += time.perf_counter() - t0
                raw_bytes += len(encode_csv(raw_rows, raw_columns))
                seen += len(raw_rows)
                client = HubClient(hub.url, device, token)
                uploader = Uploader(spool, client, root / "quarantine", batch_rows=BATCH_ROWS)
                t0 = time.perf_counter()
                while spool.has_backlog():
                    uploader.upload_once()
                timings["seal + upload"] += time.perf_counter() - t0
                wire_bytes += uploader.counters["bytes_uploaded"]
                spool.close()
            landed = sorted(hub.settings.landing.rglob("*.csv"))
            uploaded = sum(p.stat().st_size for p in landed)
            kept_mistakes = 0
            uploaded_rows = 0
            for path in landed:
                for row in csv.DictReader(io.StringIO(path.read_text())):
                    uploaded_rows += 1
                    kept_mistakes += row["prediction"] != row[manifest.label]
        single = Spool(root / "single.spool.db", 256 << 20)
        put_ms = []
        for entry in chosen[:SINGLE_PUTS]:
            t0 = time.perf_counter()
            single.put([entry])
            put_ms.append((time.perf_counter() - t0) * 1000)
        single.close()

    total_selected = sum(reasons.values())
    print("Command: `.venv/bin/python bench/edge_upload.py`")
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; model: HGB trained on {trained_on:,} "
          f"simulator rows; stream: {DEVICES} devices x {STREAM_ROWS:,} new rows (seed 1), every row labelled; "
          f"policy: {policy}; uploaded to a real hub (uvicorn on 127.0.0.1), {len(landed)} CSV batches of <= "
          f"{BATCH_ROWS} rows")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| rows seen (predicted, then labelled) | {seen:,} |")
    print(f"| raw bytes of every row (CSV: features + label) | {raw_bytes:,} |")
    print(f"| rows uploaded | {uploaded_rows:,} ({uploaded_rows / seen:.1%}) |")
    print(f"| CSV bytes landed by the hub | {uploaded:,} ({uploaded / raw_bytes:.1%} of raw) |")
    print(f"| bytes uploaded on the wire (gzip request bodies) | {wire_bytes:,} |")
    print(f"| uploaded on the wire / raw bytes | {wire_bytes / raw_bytes:.1%} |")
    print(f"| labelled mistakes kept | {kept_mistakes:,} of {mistakes:,} "
          f"({kept_mistakes / mistakes:.0%}) |" if mistakes else "| labelled mistakes kept | no mistakes |")
    for reason in ("labelled", "anomaly", "uncertain", "random"):
        print(f"| rows with reason `{reason}` | {reasons[reason]:,} ({reasons[reason] / seen:.2%} of rows seen) |")
    print(f"| rows selected in total | {total_selected:,} |")
    print(f"| durable put of one row (own transaction, fsync), p50 / p99 over {len(put_ms)} | "
          f"{np.percentile(put_ms, 50):.2f} / {np.percentile(put_ms, 99):.2f} ms |")
    for stage, seconds in timings.items():
        print(f"| time: {stage} | {seconds:.2f} s ({seen / seconds:,.0f} rows/s) |")


if __name__ == "__main__":
    main()
