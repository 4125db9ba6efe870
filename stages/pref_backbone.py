"""Stage `pref-backbone`: conventional backbones on the DMPO preference test pairs (DMPO Table 2).

For each dataset of llm.pref_eval.datasets (or run.datasets), reads the test records that
`pref-eval` scores (data/preferences/<ds>/pref_test.jsonl, the same seeded subset of at most
llm.pref_eval.max_samples) and data/processed/<ds>/interactions.parquet (+ stats.json); every
backbone of llm.pref_eval.backbones is trained with its backbone.<name> hyper-parameters on the
interactions without the test users' interactions from their preference positive on
(recranker.dmpo.backbones), then scores each record's candidates. Writes
metrics/pref_backbone/<ds>.json = {backbone: {auc, pairwise_accuracy, top1_accuracy, n_samples,
epochs}} ({} when no backbone is listed), and the training times apart, in
metrics/timings/pref_backbone/<ds>.json (read by no stage: a re-run marks `report` stale only when a
result changed).
"""

from __future__ import annotations

import typer

from stages import artifacts, paths
from stages.common import params


def pref_backbone() -> None:
    """metrics/pref_backbone/<ds>.json: AUC of conventional backbones on pref-eval's pairs."""
    from recranker.dmpo.samples import subsample
    from recranker.io import write_json
    from recranker.tracking import start_run
    from stages import dmpo_io

    p = params("llm", "backbone")
    e, bp = p.llm.pref_eval, p.backbone
    results: dict[str, dict] = {}
    timings: dict[str, dict] = {}
    config = {"seed": p.seed, "backbones": e.backbones, "max_samples": e.max_samples,
              "patience": bp.patience, "eval_every": bp.eval_every,
              **{f"backbone.{n}": bp.model(n).model_dump() for n in e.backbones}}  # fmt: skip
    with start_run("pref-backbone", config) as run:
        for ds in e.datasets or p.run.datasets:
            p.dataset(ds)
            results[ds], timings[ds] = {}, {}
            if not e.backbones:
                continue
            import torch

            from recranker.dmpo.backbones import backbone_metrics, fit_and_score

            torch.set_num_threads(bp.threads)
            rows = subsample(
                dmpo_io.read_preferences(paths.preferences(ds) / dmpo_io.TEST_FILE, k=1), e.max_samples, p.seed
            )
            df, n_users, n_items = artifacts.interactions_with_ranges(ds)
            for name in e.backbones:
                scored, fit = fit_and_score(
                    name, df, rows, n_users, n_items, bp.model(name).model_dump(),
                    patience=bp.patience, eval_every=bp.eval_every, seed=p.seed,
                )  # fmt: skip
                results[ds][name] = backbone_metrics(scored, fit)
                timings[ds][name] = fit.timings()
                run.log({f"{ds}/{name}/auc": results[ds][name]["auc"]})
        run.summary({f"{ds}/{n}/auc": m["auc"] for ds, r in results.items() for n, m in r.items()})
    for ds, r in results.items():  # after every model ran: a failure leaves no partial metrics
        write_json(paths.metrics("pref_backbone") / f"{ds}.json", r)
        write_json(paths.timings("pref_backbone") / f"{ds}.json", timings[ds])
    for ds, r in results.items():
        cells = (
            ", ".join(f"{n} {m['auc']:.3f} ({m['epochs']} epochs)" for n, m in r.items())
            or "no backbones"
        )
        typer.echo(
            f"pref-backbone {ds}: AUC {cells} → {paths.metrics('pref_backbone') / f'{ds}.json'}"
        )
