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


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="rank.dtype: 'fp8'"):
        precision.resolve("fp8", "cpu", param="rank.dtype")


def test_cpu_capability_is_read_not_measured(monkeypatch):
    """The choice never depends on a timing (the same machine makes the same bytes)."""
    monkeypatch.setattr(precision, "bf16_slowdown", lambda *a: pytest.fail("auto must not time anything"))
    precision.resolve("auto", "cpu")
