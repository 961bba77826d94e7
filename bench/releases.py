"""Release benchmark (issue 3): publish time for a ~0.2 MB and a ~10 MB model; a device's no-change
poll (requests, bytes, ms) and an update download (bytes, ms), python-tuf ngclient over loopback HTTP.

    .venv/bin/python bench/releases.py

Models are tiny real ONNX graphs padded (metadata) to the sizes asked for: publish and transfer cost
depend on bytes, not on what the graph computes. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # edgeloop.testkit.releases builds candidates

from edge.telemetry import switch_off

switch_off()

from edgeloop.testkit.releases import fetch, make_candidate, release_config, tamper_server, tiny_onnx  # noqa: E402
from flows.releases import init_repository, publish  # noqa: E402

REPEAT = 7


def median(values: object) -> float:
    return float(statistics.median(values))  # type: ignore[arg-type]


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        for label, pad in (("0.2MB", 200_000), ("10MB", 10_000_000)):
            work = tmp / label
            config = release_config(work)
            root = init_repository(config).read_bytes()
            model = tiny_onnx(seed=1, pad_bytes=pad)
            cands = [make_candidate(work / f"cand-{i}", model if i == 0 else tiny_onnx(seed=2, pad_bytes=pad),
                                    f"cand-{i:012d}") for i in range(2)]
            publish_s = []
            polls, updates = [], []
            with tamper_server(config.repository) as server:
                device = work / "device"
                first = publish(config, cands[0], "canary")
                cold = fetch(server.url, device, root=root)
                current = cold.version
                for i in range(REPEAT):
                    result = publish(config, cands[(i + 1) % 2], "canary")
                    publish_s.append(result.seconds)
                    upd = fetch(server.url, device, current=current)
                    updates.append((upd.seconds, upd.bytes_downloaded, upd.requests))
                    current = upd.version
                    for _ in range(3):
                        poll = fetch(server.url, device, current=current)
                        assert not poll.changed
                        polls.append((poll.seconds, poll.bytes_downloaded, poll.requests))
            results[label] = {
                "model_bytes": len(model),
                "publish_ms_median": round(1000 * median(publish_s), 1),
                "publish_ms_max": round(1000 * max(publish_s), 1),
                "first_publish_ms": round(1000 * first.seconds, 1),
                "cold_start": {"ms": round(1000 * cold.seconds, 1), "bytes": cold.bytes_downloaded,
                               "requests": cold.requests},
                "no_change_poll": {"ms_median": round(1000 * median(p[0] for p in polls), 2),
                                   "bytes": median(p[1] for p in polls), "requests": median(p[2] for p in polls)},
                "update": {"ms_median": round(1000 * median(u[0] for u in updates), 1),
                           "bytes_median": median(u[1] for u in updates), "requests": median(u[2] for u in updates)},
            }
            timestamp_size = (config.metadata_dir / "timestamp.json").stat().st_size
            results[label]["timestamp_json_bytes"] = timestamp_size
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.1f} s")
