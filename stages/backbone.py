"""Stage `backbone`: train one conventional recommender on one dataset and export its outputs.

Reads data/processed/<ds>/interactions.parquet (+ stats.json for the id ranges), trains on
split=train with early stopping on valid NDCG@10, and writes models/backbones/<ds>/<bb>/
(weights, config, candidates for every user, user embeddings, metrics) as one atomic directory.
"""

from __future__ import annotations

import typer

from stages import artifacts, paths
from stages.common import params


def backbone(
    dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets)."),
    model: str = typer.Option(
        ..., help="Backbone: mostpop, mf, lightgcn, mixgcf, sgl, sasrec, bert4rec, cl4srec."
    ),
) -> None:
    """Train backbone MODEL on DATASET; write models/backbones/<dataset>/<model>/."""
    import torch

    from recranker.backbones import MODELS, Interactions, build
    from recranker.backbones.export import export
    from recranker.backbones.training import fit
    from recranker.errors import RecrankerError
    from recranker.io import atomic_path, write_json
    from recranker.tracking import start_run

    p = params("backbone")
    p.dataset(dataset)
    if model not in MODELS:
        raise RecrankerError(f"--model: unknown backbone '{model}' (known: {', '.join(MODELS)})")
    bp = p.backbone
    hyper = bp.model(model)  # the model's own config class (recranker.backbones.config)
    torch.set_num_threads(bp.threads)

    df, n_users, n_items = artifacts.interactions_with_ranges(dataset)
    data = Interactions.from_frame(df, n_users, n_items)

    config = {"dataset": dataset, "model": model, "seed": p.seed, "top_k": bp.top_k,
              "patience": bp.patience, "eval_every": bp.eval_every, **hyper.model_dump()}  # fmt: skip
    with start_run(f"backbone:{dataset}:{model}", config) as run:
        net = build(model, n_users, n_items, hyper, seed=p.seed)
        result = fit(net, data, patience=bp.patience, eval_every=bp.eval_every, seed=p.seed,
                     log=lambda row: run.log(row, step=int(row["epoch"])))  # fmt: skip
        with atomic_path(paths.backbone(dataset, model), is_dir=True) as tmp:
            metrics = export(net, data, result, tmp, top_k=bp.top_k)
        # the DVC metrics file (the copy inside the model directory travels with the weights)
        write_json(paths.metrics("backbone") / dataset / f"{model}.json", metrics)
        write_json(paths.timings("backbone") / dataset / f"{model}.json", result.timings())
        run.summary({f"{s}/{k}": v for s in ("valid", "test") for k, v in metrics[s].items()})
    test = metrics["test"]
    typer.echo(
        f"backbone {dataset}/{model}: {result.epochs} epochs (best {result.best_epoch}), "
        f"{result.train_seconds:.1f}s train; test HR@10 {test['HR@10']:.4f} NDCG@10 {test['NDCG@10']:.4f}"
        f" → {paths.backbone(dataset, model)}"
    )
