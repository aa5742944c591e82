"""The benchmark harness (``bench/``) end to end at a small N, on the session's stack.

Not a benchmark: it proves that every phase runs against the real stack and the real operator, that the JSON
holds every figure, and that an unchanged refresh and a restart write nothing to the Kubernetes API.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from bench.harness import BenchConfig, run_bench, table

from vaultsync.devstack.stack import LocalStack

N = 30

FIGURES = {
    "first_sync": ["seconds", "throughput_per_s", "create_seconds", "cpu_seconds"],
    "raw": ["seconds", "throughput_per_s", "cpu_seconds"],
    "latency": ["samples", "p50_s", "p99_s", "max_s"],
    "rotation": ["interval_s", "bound_s", "delays_s", "max_delay_s", "refresh_periods_s"],
    "unchanged_refresh": [
        "due",
        "vault_reads",
        "distinct_identity_paths",
        "kube_writes",
        "logins",
        "window_per_object_s",
    ],
    "restart": ["objects", "reverified_s", "kube_writes", "vault_reads", "logins_per_identity"],
    "memory": ["peak_rss_mb", "peak_rss_mb_restarted"],
}


@pytest.mark.timeout(300)
def test_the_harness_measures_every_figure(
    stack: LocalStack, vault_kubernetes_auth: str, tmp_path: Path
) -> None:
    config = BenchConfig(
        n=N, latency_samples=5, rotation_objects=2, rotation_interval=8.0, results_dir=tmp_path
    )
    results = asyncio.run(run_bench(config, stack=stack, say=print))

    written = json.loads(Path(results["results_file"]).read_text())
    assert written["n"] == N
    for section, keys in FIGURES.items():
        missing = [key for key in keys if written[section].get(key) is None]
        assert not missing, f"{section} lacks {missing}"
    assert written["first_sync"]["seconds"] > 0 and written["raw"]["seconds"] > 0
    assert written["ratio_operator_raw"] > 0
    assert written["latency"]["samples"] == 5
    assert len(written["rotation"]["delays_s"]) == 2
    assert written["memory"]["peak_rss_mb"] > 0
    assert set(written["targets"]) >= {"first_sync_s", "latency_p99_s", "refresh_kube_writes", "peak_rss_mb"}

    # The contract, measured from outside the operator (API server and OpenBao audit logs).
    refresh = written["unchanged_refresh"]
    assert refresh["due"] == N
    assert refresh["kube_writes"] == 0, refresh["kube_writes_by_kind"]
    assert refresh["vault_reads"] > 0
    assert refresh["logins"] == 0
    assert list(written["logins_per_identity"].values()) == [1]
    restart = written["restart"]
    assert restart["objects"] == N + 5 + 2
    assert restart["kube_writes"] == 0, restart["kube_writes_by_kind"]
    assert "first sync" in table(written)
