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


def _library_class(section_type: type) -> type | None:
    """The library config class a params section is or extends (None: a stage-only section)."""
    from recranker.schema import Section

    return next((c for c in section_type.__mro__ if issubclass(c, Section) and c is not Section
                 and c.__module__.startswith("recranker.")), None)


def _drift(section, prefix: str = ""):
    """(key, library default, params.yaml value) wherever a library config default differs."""
    from recranker.schema import Section

    library = _library_class(type(section))
    for name in type(section).model_fields:
        value = getattr(section, name)
        key = f"{prefix}{name}"
        if isinstance(value, Section):
            yield from _drift(value, key + ".")
            if library is not None and name in library.model_fields:
                default = library.model_fields[name].get_default(call_default_factory=True)
                if default.model_dump() != value.model_dump():
                    yield key, default.model_dump(), value.model_dump()
        elif isinstance(value, dict) and value and all(isinstance(v, Section) for v in value.values()):
            for k, v in value.items():
                yield from _drift(v, f"{key}.{k}.")
        elif library is not None and name in library.model_fields:
            default = library.model_fields[name].get_default(call_default_factory=True)
            if default != value:
                yield key, default, value


def test_library_defaults_equal_params_yaml():
    """Each default is declared once: a library config class (recranker.*.config, SamplingConfig)
    that a params section is or extends has params.yaml's value as its default, value by value, so
    code that builds a config without params (tests, benchmarks, notebooks) trains what the
    pipeline trains."""
    from recranker.backbones.config import MFConfig
    from recranker.dmpo.config import DMPOSettings, DMPOSFTSettings, PreferenceConfig
    from recranker.llm.backends.config import GenerationConfig, OpenAIConfig, VLLMConfig
    from recranker.llm.config import LoraSettings, SFTSettings
    from recranker.prompts.config import InstructConfig
    from recranker.ranking.config import HybridWeights
    from recranker.sampling_config import SamplingConfig

    params = load_params(ROOT / "params.yaml")
    assert list(_drift(params)) == []
    # the walk reaches every library config class the params use (not vacuous)
    reached = {_library_class(type(s)) for s in (
        params.sampling, params.instruct, params.preferences, params.llm.sft, params.llm.sft.lora,
        params.llm.dmpo_sft, params.llm.dmpo, params.backbone.mf, params.rank.sampling,
        params.rank.openai, params.rank.vllm, params.evaluate.hybrid)}
    assert reached == {SamplingConfig, InstructConfig, PreferenceConfig, SFTSettings, LoraSettings,
                       DMPOSFTSettings, DMPOSettings, MFConfig, GenerationConfig, OpenAIConfig,
                       VLLMConfig, HybridWeights}


def test_drift_is_reported():
    """The check above can fail: a params.yaml value other than the library's default is named."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["llm"]["dmpo"]["lr"] = 0.5
    raw["llm"]["sft"]["lora"]["r"] = 4
    from stages.params import check_params

    drift = {key: (default, value) for key, default, value in _drift(check_params(raw, "test"))}
    assert drift["llm.dmpo.lr"] == (1e-3, 0.5)
    assert drift["llm.sft.lora.r"] == (8, 4)


def test_params_schema_imports_no_algorithm():
    """Every stage loads params: the schema imports config modules only (pydantic), never an
    algorithm (recranker.sampling), torch or transformers — so dvc.yaml's code deps of a stage are
    what it runs, and loading params is cheap."""
    code = ("import sys, stages.params; "
            "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('recranker', 'torch', 'transformers', 'trl', 'peft', 'numpy', 'sklearn', 'pandas'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "recranker.sampling_config" in loaded  # the subprocess really imported the schema
    heavy = {m for m in loaded if not m.startswith("recranker.")} - {"recranker"}
    assert heavy == set()
    assert "recranker.sampling" not in loaded
    algorithms = {m for m in loaded if m.startswith("recranker.")
                  and m.rsplit(".", 1)[-1] not in ("config", "sampling_config", "schema", "errors", "tasks")  # tasks: names only
                  and not _is_package(m)}
    assert algorithms == set()


def _is_package(module: str) -> bool:
    import importlib.util

    spec = importlib.util.find_spec(module)
    return bool(spec and spec.submodule_search_locations)


def test_trainer_settings_leave_out_stage_knobs():
    """training_log.json and the resume fingerprint hold the library section's knobs, its fixed
    constants and the run context — never a stage's own knobs (held-out split, data choice)."""
    p = load_params(ROOT / "params.yaml")
    sft = p.llm.sft.with_run(seed=1).settings()
    assert {"eval_fraction", "max_eval"}.isdisjoint(sft) and sft["loss_average"] == "token"
    assert {"max_steps", "lora", "group_by_length", "seed", "checkpoint_dir"} <= set(sft)
    dmpo = p.llm.dmpo.with_run(seed=1, lora=p.llm.dmpo_sft.lora).settings()
    assert {"datasets", "max_train", "valid_samples"}.isdisjoint(dmpo)
    assert dmpo["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj"] and dmpo["eval_steps"] == 0
    dmpo_sft = p.llm.dmpo_sft.with_run(seed=1).settings()
    assert "loss_average" not in dmpo_sft and dmpo_sft["group_by_length"] is False
