"""Stage `pref-eval`: preference AUC (paper §4.5) of base / SFT only (models/llm/dmpo-sft) / SFT +
DMPO on the test pairs, in and across domains, with 95% paired bootstrap intervals; per-token
explanations of what DMPO changed."""

from __future__ import annotations

import gc
import itertools
import time

import typer

from stages import dmpo_io, paths
from stages.common import params

EXPLAIN_JSON = paths.METRICS / "pref_explain.json"
EXPLAIN_PNG = paths.METRICS / "pref_explain.png"
RUN_JSON = paths.METRICS / "pref_eval_run.json"


def _load(name: str, dtype: str):
    from recranker.llm.backends.hf import load_hf

    return load_hf(paths.base_model(), None if name == "base" else dmpo_io.dmpo_model(name), dtype)[0]


def pref_eval() -> None:
    """metrics/pref_eval.json (AUC with 95% intervals, accuracies, per dataset × model) and explanations."""
    from recranker.dmpo.evaluate import (
        bootstrap_draws,
        explain,
        paired_difference,
        plot_explanations,
        preference_metrics,
        score_records,
    )
    from recranker.dmpo.samples import subsample
    from recranker.io import atomic_path, write_json
    from recranker.llm.model import load_tokenizer
    from recranker.llm.precision import default_device, resolve
    from recranker.tracking import start_run

    t0 = time.perf_counter()
    p = params("llm")
    e = p.llm.pref_eval
    e = e.model_copy(update={"dtype": resolve(e.dtype, default_device(), param="llm.pref_eval.dtype")})
    trained_on = set(dmpo_io.train_datasets(p))
    eval_sets = {}
    for ds in dmpo_io.eval_datasets(p):
        rows = dmpo_io.read_preferences(paths.preferences(ds) / dmpo_io.TEST_FILE, k=1)
        eval_sets[ds] = subsample(rows, e.max_samples, p.seed)
    tokenizer = load_tokenizer(str(paths.base_model()))

    results: dict = {ds: {"domain": "in-domain" if ds in trained_on else "cross-domain"} for ds in eval_sets}
    scored: dict = {ds: {} for ds in eval_sets}
    draws = {ds: bootstrap_draws(len(rows), e.bootstrap, p.seed) if e.bootstrap else None
             for ds, rows in eval_sets.items()}  # fmt: skip
    with start_run("pref-eval", e.model_dump()) as run:
        for name in e.models:
            model = _load(name, e.dtype)
            for ds, rows in eval_sets.items():
                scored[ds][name] = score_records(model, tokenizer, rows, batch_size=e.batch_size,
                                                 max_length=e.max_length)  # fmt: skip
                results[ds][name] = preference_metrics(scored[ds][name], e.score, draws[ds])
                other = "mean_logprob" if e.score == "mean_prob" else "mean_prob"
                results[ds][name][f"auc_{other}"] = preference_metrics(scored[ds][name], other)["auc"]
                run.log({f"{ds}/{name}/auc": results[ds][name]["auc"]})
            del model
            gc.collect()
        for ds in eval_sets:  # paired differences, each model against the one before it
            if draws[ds] is not None:
                ms = [m for m in e.models if m in scored[ds]]
                results[ds]["differences"] = {
                    f"{a}-{b}": paired_difference(scored[ds][a], scored[ds][b], draws[ds], e.score)
                    for b, a in itertools.pairwise(ms)
                }
        run.summary({f"{ds}/{m}/auc": r[m]["auc"] for ds, r in results.items() for m in e.models})

        explanations = []
        if e.explain_samples and {"sft", "dmpo"} <= set(e.models):
            ds = next(iter(eval_sets))
            models = {"sft": _load("sft", e.dtype), "dmpo": _load("dmpo", e.dtype)}  # before / after DMPO
            explanations = explain(models, tokenizer, eval_sets[ds][: e.explain_samples], max_length=e.max_length)
            for ex in explanations:
                ex["dataset"] = ds
    write_json(paths.METRICS / "pref_eval.json", results)
    # How it ran (nothing downstream reads this file, so a machine's choice never makes `report` stale)
    write_json(RUN_JSON, {"dtype": e.dtype, "device": default_device(),
                          "seconds": round(time.perf_counter() - t0, 1)})
    write_json(EXPLAIN_JSON, {"explanations": explanations})
    with atomic_path(EXPLAIN_PNG) as tmp:
        plot_explanations(explanations, tmp)
    for ds, r in results.items():
        cells = ", ".join(f"{m} {r[m]['auc']:.3f} {r[m].get('auc_ci95', '')}" for m in e.models)
        typer.echo(f"pref-eval {ds} ({r['domain']}, {e.score}): AUC {cells}")
