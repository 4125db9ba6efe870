"""Stage I/O shared by the DMPO branch (`preferences`, `import-preferences`, `dmpo-sft`, `dmpo`,
`pref-eval`, `pref-backbone`): which preference datasets, and their files.
Not a stage: no DMPO stage imports another stage module."""

from __future__ import annotations

from pathlib import Path

from stages import paths

SFT_FILE = "sft_train.jsonl"
TRAIN_FILE = "pref_train.jsonl"
VALID_FILE = "pref_valid.jsonl"
TEST_FILE = "pref_test.jsonl"


def check_dataset(p, name: str) -> str:
    """A ratings dataset (datasets.<name>) or an imported one (preferences.imported.<name>)."""
    if name not in p.preferences.imported:
        p.dataset(name)
    return name


def train_datasets(p) -> list[str]:
    """The preference data dmpo-sft and dmpo train on: llm.dmpo.datasets, or run.datasets."""
    return [check_dataset(p, d) for d in (p.llm.dmpo.datasets or p.run.datasets)]


def eval_datasets(p) -> list[str]:
    return [check_dataset(p, d) for d in (p.llm.pref_eval.datasets or p.run.datasets)]


def read_preferences(path: Path, k: int) -> list[dict]:
    """Preference JSONL → records, validated with file:line (k = pairs needed per record)."""
    from recranker.dmpo.train import pairs_of
    from recranker.io import read_jsonl

    rows = []
    for row, where in read_jsonl(path, missing="the `preferences` stage (or `import-preferences`) writes it"):
        pairs_of(row, k, where)
        rows.append(row)
    return rows


def dmpo_model(name: str) -> Path:
    """pref-eval's model names → model dirs: "sft" is DMPO's own SFT (models/llm/dmpo-sft)."""
    return paths.llm({"sft": "dmpo-sft", "dmpo": "dmpo"}[name])


def valid_auc(model_dir: Path | None, p) -> dict:
    """AUC (llm.pref_eval.score, 95% interval) of a trained model (None: the base model) on the valid
    pairs of the training datasets (llm.dmpo.valid_samples of them; none: {}) — never the test pairs."""
    from recranker.dmpo.evaluate import bootstrap_draws, preference_metrics, score_records
    from recranker.dmpo.samples import subsample
    from recranker.llm.backends.hf import load_hf

    n = p.llm.dmpo.valid_samples
    valid: list[dict] = []
    for ds in train_datasets(p) if n else []:
        valid += read_preferences(paths.preferences(ds) / VALID_FILE, k=1)
    valid = subsample(valid, n, p.seed)
    if not valid:
        return {}
    e = p.llm.pref_eval
    from recranker.llm.precision import default_device, resolve

    dtype = resolve(e.dtype, default_device(), param="llm.pref_eval.dtype")
    model, tokenizer = load_hf(paths.base_model(), model_dir, dtype)
    scored = score_records(model, tokenizer, valid, batch_size=e.batch_size, max_length=e.max_length)
    m = preference_metrics(scored, e.score, bootstrap_draws(len(valid), e.bootstrap, p.seed) if e.bootstrap else None)
    return {"valid_auc": m["auc"], "valid_auc_ci95": m.get("auc_ci95"), "valid_samples": len(valid),
            "valid_dtype": dtype}
