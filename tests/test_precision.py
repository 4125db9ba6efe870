"""dtype `auto`: bf16 only where the device computes it natively; an emulated bf16 is said."""

from __future__ import annotations

import pytest

from recranker.llm import precision


def test_auto_follows_the_cpu():
    native = precision.cpu_has_native_bf16()
    assert precision.resolve("auto", "cpu") == ("bfloat16" if native else "float32")
    assert precision.resolve_bf16("auto", "cpu") is native
    assert precision.resolve("float32", "cpu") == "float32"
    assert precision.resolve_bf16(False, "cpu") is False
    assert precision.cpu_capability().endswith("+BF16") is native


def test_explicit_bf16_on_an_emulating_cpu_warns_once_per_call(capsys):
    if precision.cpu_has_native_bf16():
        pytest.skip("this CPU computes bf16 natively: nothing to warn about")
    assert precision.resolve("bfloat16", "cpu", param="rank.dtype") == "bfloat16"  # it runs as asked
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: rank.dtype: bfloat16 on a CPU without bf16 units")
    assert "slower per matmul than float32 here" in err[0]


def test_an_isa_cap_below_bf16_makes_bf16_emulated():
    assert precision.onednn_isa_allows_bf16(None) and precision.onednn_isa_allows_bf16("")
    for cap in ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10_1_512", "ALL"):
        assert precision.onednn_isa_allows_bf16(cap), cap
    for cap in ("AVX2", "avx2", "AVX512_CORE", "AVX512_CORE_VNNI", "SSE41"):
        assert not precision.onednn_isa_allows_bf16(cap), cap


def test_auto_is_float32_and_bf16_warned_under_an_avx2_cap():
    """What an AVX2 laptop does, on any x86 CPU: the cap is read when the process starts."""
    import os
    import subprocess
    import sys

    code = ("from recranker.llm import precision as p; "
            "print(p.resolve('auto', 'cpu')); p.resolve('bfloat16', 'cpu', param='rank.dtype')")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "float32"
    assert "warning: rank.dtype: bfloat16 on a CPU without bf16 units (AVX2)" in out.stderr


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="rank.dtype: 'fp8'"):
        precision.resolve("fp8", "cpu", param="rank.dtype")


def test_cpu_capability_is_read_not_measured(monkeypatch):
    """The choice never depends on a timing (the same machine makes the same bytes)."""
    monkeypatch.setattr(precision, "bf16_slowdown", lambda *a: pytest.fail("auto must not time anything"))
    precision.resolve("auto", "cpu")
