"""benchmarks/default_run.py: the CPU probe, with and without imitating an AVX2 CPU, and how it
reads a stage's precision from its metrics (the run itself: tests/test_e2e.py)."""

from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("torch")


def test_imitating_avx2_limits_torch_to_avx2_and_auto_to_float32(benchmark_script):
    bench = benchmark_script("default_run")
    plain = bench.probe(sys.executable, dict(os.environ))
    imitated = bench.probe(sys.executable, {**os.environ, **bench.AVX2_ENV})
    assert imitated["torch_capability"] == "AVX2"
    assert plain["matmul_gflops_1thread"]["float32"] > 0 and imitated["matmul_gflops_1thread"]["bfloat16"] > 0
    # oneDNN capped at AVX2 can only emulate bf16, so `auto` is fp32 there, as on a real AVX2 CPU
    assert imitated["native_bf16"] is False and imitated["auto_dtype"] == "float32"
    assert plain["auto_dtype"] == ("bfloat16" if plain["native_bf16"] else "float32")


def test_precision_is_read_from_a_stages_metrics(tmp_path, benchmark_script):
    bench = benchmark_script("default_run")
    (tmp_path / "rank.json").write_text(json.dumps({"dtype": "float32", "seconds": 3}))
    (tmp_path / "dmpo.json").write_text(json.dumps({"train": {"bf16": False}, "loss": 0.6}))
    found = bench.precision_of([tmp_path / "rank.json", tmp_path / "dmpo.json", tmp_path / "absent.json"])
    assert found == {"rank.json:dtype": "float32", "dmpo.json:train.bf16": False}
