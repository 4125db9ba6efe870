"""Every recipe's `-S` overrides, applied by DVC's own override code to the real params.yaml,
must give a params file that validates (no typo'd key, no bad value can slip through)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from recranker import experiments as ex
from recranker.errors import RecrankerError

ROOT = Path(__file__).resolve().parents[1]


def _apply(tmp_path: Path, args: list[str]) -> dict:
    from dvc.utils.hydra import apply_overrides

    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    overrides = [args[i + 1] for i in range(0, len(args), 2)]
    assert all(args[i] == "-S" for i in range(0, len(args), 2))
    apply_overrides(target, overrides)
    return yaml.safe_load(target.read_text())


def _get(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted}: '{part}' missing"
        node = node[part]
    return node


CASES = [
    (r, v, paper)
    for r in ex.RECIPES
    for v in r.variants
    for paper in ((True,) if r.gpu_only else (False, True))
]


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node[part]
    assert leaf in node, f"{dotted}: unknown key"
    node[leaf] = value


@pytest.mark.parametrize("r", ex.RECIPES, ids=[r.name for r in ex.RECIPES])
def test_every_override_is_a_known_key_with_a_valid_value(r):
    """All variants of a recipe: DVC's -S grammar (Hydra) reads back the intended value, the key
    exists in params.yaml, and the resulting params validate against the schema."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from stages.params import Params

    parser = OverridesParser.create()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for rr, v, paper in CASES:
        if rr is not r:
            continue
        overrides = r.overrides(v, paper)
        args = ex.set_args(overrides)
        parsed = parser.parse_overrides([args[i + 1] for i in range(0, len(args), 2)])
        tree = yaml.safe_load(yaml.safe_dump(base))
        for o, (key, value) in zip(parsed, overrides.items()):
            assert o.key_or_group == key and o.value() == value, (key, o.value(), value)
            _set(tree, key, o.value())
        dumped = Params.model_validate(tree).model_dump()
        for key, value in overrides.items():
            assert _get(dumped, key) == value, key


@pytest.mark.parametrize("name", ["rr-ablation", "rr-data-scaling", "dmpo-fewshot", "rr-paper"])
def test_dvc_writes_params_that_load(tmp_path, name):
    """The real round trip for a few recipes: DVC's own override code edits a copy of params.yaml,
    then the stages' loader validates it (as `dvc exp run -S` followed by a stage would)."""
    from stages.params import load_params

    r = ex.recipe(name)
    v = r.variants[-1]
    for paper in ((True,) if r.gpu_only else (False, True)):
        overrides = r.overrides(v, paper)
        tree = _apply(tmp_path, ex.set_args(overrides))
        for key, value in overrides.items():
            got = _get(tree, key)
            # PyYAML reads DVC's "1e-12" back as a string; pydantic then coerces it, checked below
            assert got == value or float(got) == pytest.approx(value), (key, got, value)
        dumped = load_params(tmp_path / "params.yaml").model_dump()
        for key, value in overrides.items():
            assert _get(dumped, key) == value, key


def test_a_typo_is_caught(tmp_path):
    from dvc.exceptions import InvalidArgumentError

    from stages.params import load_params

    with pytest.raises(InvalidArgumentError):  # DVC refuses a new key without "+"
        _apply(tmp_path, ["-S", "sampling.penalti=0.9"])
    _apply(tmp_path, ["-S", "+sampling.penalti=0.9"])
    with pytest.raises(RecrankerError, match="sampling.penalti: unknown key"):
        load_params(tmp_path / "params.yaml")
    _apply(tmp_path, ["-S", "sampling.penalty=1.5"])
    with pytest.raises(RecrankerError, match="sampling.penalty"):
        load_params(tmp_path / "params.yaml")


def test_names_are_unique_and_map_back():
    names = [ex.experiment_name(r.name, v.name, p) for r, v, p in CASES]
    assert len(names) == len(set(names))
    for r, v, p in CASES:
        assert ex.lookup(ex.experiment_name(r.name, v.name, p)) == (r, v, p)
    assert ex.lookup("not-a-recipe") is None


def test_format_value_and_exp_args():
    assert ex.format_value(True) == "true"
    assert ex.format_value(None) == "null"
    assert ex.format_value(["pointwise", "pairwise"]) == "[pointwise,pairwise]"
    assert ex.format_value(2e-05) == "0.00002"
    assert ex.format_value(0.5) == "0.5"
    r = ex.recipe("rr-c1")
    argv = ex.exp_run_args(r, r.variants[1])
    assert argv[:5] == ["exp", "run", "-n", "rr-c1-c1-0p025", "--temp"]
    assert "evaluate.hybrid.c1=0.025" in argv and argv[-1] == "evaluate"
    assert "--queue" in ex.exp_run_args(r, r.variants[0], queue=True)
    paper = ex.exp_run_args(r, r.variants[0], paper_scale=True)
    assert "rank.backend=vllm" in paper and paper[3].endswith("-paper")


def test_gpu_only_and_unknown_names():
    r = ex.recipe("rr-paper")
    with pytest.raises(RecrankerError, match="GPU-only"):
        r.overrides(r.variants[0], paper_scale=False)
    with pytest.raises(RecrankerError, match="unknown recipe 'nope'"):
        ex.recipe("nope")
    with pytest.raises(RecrankerError, match="unknown variant"):
        ex.select(ex.recipe("rr-c1"), ["c1-9"])


def test_recipes_cover_both_papers():
    papers = " ".join(r.paper for r in ex.RECIPES)
    for item in ("RecRanker Table III", "Table IV", "Table V", "Figure 3 (C1)", "(C2)", "(C3)", "Table VI",
                 "RecRanker Figure 4", "DMPO Table 2", "DMPO Figure 3", "DMPO Figure 4", "DMPO Table 3"):
        assert item in papers


def test_docs_document_every_recipe_as_catalogued():
    doc = (ROOT / "docs" / "experiments.md").read_text()
    stale = [r.name for r in ex.RECIPES if ex.markdown(r) not in doc]
    assert not stale, f"docs/experiments.md is stale for {stale}: run scripts/experiments_doc.py"


def test_exp_checks_every_override_against_the_schema_before_running(monkeypatch):
    from stages.exp import check_overrides

    monkeypatch.chdir(ROOT)
    check_overrides("rr-c1", "c1-0p1", {"evaluate.hybrid.c1": 0.1})
    with pytest.raises(RecrankerError, match=r"^recipe r, variant v: evaluate\.ks\.0: 99 is outside 1\.\.10"):
        check_overrides("r", "v", {"evaluate.ks": [99]})
    with pytest.raises(RecrankerError, match=r"^recipe r, variant v: sampling\.bogus: unknown key"):
        check_overrides("r", "v", {"sampling.bogus": 1})


def test_catalogue_files_are_the_recipes(tmp_path):
    """One YAML file per recipe; index.yaml must list exactly those files."""
    src = Path(ex.__file__).with_name("recipes")
    shutil.copytree(src, tmp_path / "recipes")
    profile, recipes = ex.load_catalogue(tmp_path / "recipes")
    assert [r.name for r in recipes] == [r.name for r in ex.RECIPES] and profile == ex.PAPER_PROFILE
    (tmp_path / "recipes" / "rr-extra.yaml").write_text("paper: x\n")
    with pytest.raises(RecrankerError, match="index.yaml: order must list exactly the recipe files"):
        ex.load_catalogue(tmp_path / "recipes")


def test_committed_file_reads_a_metrics_file_at_a_commit(tmp_path, monkeypatch):
    """What `recranker exp --save` restores the intervals from: a real git commit."""
    import subprocess

    from stages.exp import committed_file

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    monkeypatch.chdir(tmp_path)
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "pref_eval.json").write_text('{"auc_ci95": [0.5, 0.6]}\n')
    subprocess.run([*git, "add", "metrics"], check=True)
    subprocess.run([*git, "commit", "-qm", "m"], check=True)
    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "metrics" / "pref_eval.json").write_text("{}\n")  # the workspace moved on
    assert committed_file(rev, "metrics/pref_eval.json") == '{"auc_ci95": [0.5, 0.6]}\n'
    assert committed_file(rev, "metrics/missing.json") is None
    assert committed_file(None, "metrics/pref_eval.json") is None
