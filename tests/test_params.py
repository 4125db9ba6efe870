import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recranker.errors import RecrankerError
from stages.params import Params, load_params

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_project_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.run.datasets, "at least one dataset is configured"
    for name in params.run.datasets:
        assert params.dataset(name).format


def test_unknown_key_is_named(tmp_path):
    p = write(tmp_path, "sampling:\n  mode: uniform\n  bogus_knob: 3\n")
    with pytest.raises(RecrankerError, match=r"sampling\.bogus_knob: unknown key"):
        load_params(p)


def test_bad_value_is_named(tmp_path):
    p = write(tmp_path, "backbone:\n  top_k: -1\n")
    with pytest.raises(RecrankerError, match=r"backbone\.top_k:"):
        load_params(p)


def test_unknown_dataset_in_run_list(tmp_path):
    p = write(tmp_path, "run:\n  datasets: [nope]\n")
    with pytest.raises(RecrankerError, match=r"datasets\.nope: unknown dataset"):
        load_params(p)


def test_invalid_yaml_names_line(tmp_path):
    p = write(tmp_path, "seed: 1\nrun: [unclosed\n")
    with pytest.raises(RecrankerError, match=r"params\.yaml:\d+: invalid YAML"):
        load_params(p)


def test_defaults_round_trip():
    assert Params.model_validate(Params().model_dump()) == Params()


def test_cli_reports_one_line_and_exit_2(tmp_path):
    p = write(tmp_path, "seed: not-a-number\n")
    env = {"RECRANKER_PARAMS": str(p), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "stages", "prepare", "--dataset", "ml-100k"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "seed" in lines[0]


def test_params_file_names_every_key():
    """Every knob is visible in params.yaml (and DVC `params:` deps always resolve)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    defaults = Params().model_dump()

    def missing(schema, given, prefix=""):
        for key, value in schema.items():
            if key not in given:
                yield prefix + key
            elif isinstance(value, dict) and value and isinstance(given[key], dict):
                yield from missing(value, given[key], f"{prefix}{key}.")

    schema = {k: v for k, v in defaults.items() if k != "datasets"}
    assert list(missing(schema, raw)) == []
