"""Stage `pref-eval`: preference AUC of base / SFT (TALLRec-style baseline) / SFT+DMPO, in and
across domains, plus per-token explanations of what DMPO changed."""

from __future__ import annotations

import gc

import typer

from stages import artifacts, paths
from stages.common import params

EXPLAIN_JSON = paths.METRICS / "pref_explain.json"
EXPLAIN_PNG = paths.METRICS / "pref_explain.png"


def _load(name: str, dtype: str):
    from recranker.llm.backends.hf import load_hf

    return load_hf(paths.base_model(), None if name == "base" else paths.llm(name), dtype)[0]


def pref_eval() -> None:
    """metrics/pref_eval.json (AUC, pairwise and top-1 accuracy per dataset × model) and explanations."""
    from recranker.io import atomic_path, write_json
    from recranker.llm.dmpo import to_preference
    from recranker.llm.model import load_tokenizer
    from recranker.llm.preference_eval import (
        explain,
        plot_explanations,
        preference_metrics,
        score_records,
    )
    from recranker.tracking import start_run

    p = params()
    e = p.llm.pref_eval
    trained_on = set(artifacts.dmpo_datasets(p))
    eval_sets = {}
    for ds in e.datasets or p.run.datasets:
        p.dataset(ds)
        rows = artifacts.preference_records(
            ds, artifacts.PREF_TEST, lambda row, where: to_preference(row, 1, where))
        eval_sets[ds] = artifacts.subsample(rows, e.max_samples, p.seed)
    tokenizer = load_tokenizer(str(paths.base_model()))

    results: dict = {ds: {"domain": "in-domain" if ds in trained_on else "cross-domain"} for ds in eval_sets}
    with start_run("pref-eval", e.model_dump()) as run:
        for name in e.models:
            model = _load(name, e.dtype)
            for ds, rows in eval_sets.items():
                scored = score_records(model, tokenizer, rows, batch_size=e.batch_size, max_length=e.max_length)
                results[ds][name] = preference_metrics(scored)
                run.log({f"{ds}/{name}/auc": results[ds][name]["auc"]})
            del model
            gc.collect()
        run.summary({f"{ds}/{m}/auc": r[m]["auc"] for ds, r in results.items() for m in e.models})

        explanations = []
        if e.explain_samples and {"sft", "dmpo"} <= set(e.models):
            ds = next(iter(eval_sets))
            models = {"sft": _load("sft", e.dtype), "dmpo": _load("dmpo", e.dtype)}  # before / after DMPO
            explanations = explain(models, tokenizer, eval_sets[ds][: e.explain_samples], max_length=e.max_length)
            for ex in explanations:
                ex["dataset"] = ds
    write_json(paths.METRICS / "pref_eval.json", results)
    write_json(EXPLAIN_JSON, {"explanations": explanations})
    with atomic_path(EXPLAIN_PNG) as tmp:
        plot_explanations(explanations, tmp)
    for ds, r in results.items():
        cells = ", ".join(f"{m} {r[m]['auc']:.3f}" for m in e.models)
        typer.echo(f"pref-eval {ds} ({r['domain']}): AUC {cells}")
