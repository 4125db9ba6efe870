"""Stage `prepare`: raw dataset → data/processed/<ds>/; command `synth`: a synthetic ML-100K folder."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import paths, raw_source
from stages.common import params


def prepare(
    dataset: str = typer.Option(
        ..., "--dataset", help="Dataset name (a key of params.yaml: datasets)."
    ),
) -> None:
    """Read, clean, k-core, re-index and split one dataset (leave-one-out by time).

    Reads data/raw/<dataset>/, the copy of the source that the stage `raw` keeps (a DVC
    dependency: a changed raw file makes this stage stale); run on its own, it refreshes the copy
    first, as `raw` does (a no-op under `dvc repro`, where `raw` has just run)."""
    from recranker.data import prepare as prepare_data
    from recranker.data import read_raw, write_prepared
    from recranker.errors import DataFormatError
    from recranker.io import write_json
    from recranker.tracking import start_run

    d = params().dataset(dataset)
    source, folder, _ = raw_source.raw_folder(dataset, d)
    try:
        raw = read_raw(
            d.format, folder, include_implicit=d.include_implicit, seed=d.seed, category=d.category,
            rating_scale=tuple(d.rating_scale) if d.rating_scale else None,
        )
    except DataFormatError as err:  # name the file the user can fix, not our copy of it
        if Path(err.path).parent != folder:
            raise
        raise DataFormatError(Path(source) / Path(err.path).name, err.line, err.problem) from None
    prepared = prepare_data(
        raw,
        kcore_k=d.kcore,
        min_interactions=d.min_interactions,
        require_title=d.require_title,
        name=dataset,
    )
    out = write_prepared(prepared, paths.processed(dataset))
    s = prepared.stats
    summary = {k: s[k] for k in ("users", "items", "ratings", "density")}
    summary.update({f"n_{k}": v for k, v in s["splits"].items()})
    write_json(paths.metrics("prepare") / f"{dataset}.json", summary)
    with start_run(f"prepare:{dataset}", d.model_dump()) as run:
        run.summary(summary)
    typer.echo(
        f"{dataset}: {s['users']} users, {s['items']} items, {s['ratings']} ratings "
        f"(from {source}) → {out}"
    )


def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write the files into."),
    users: int = typer.Option(100, "--users", help="Number of users (llama-factory: training histories)."),
    items: int = typer.Option(200, "--items", help="Number of items."),
    ratings: int = typer.Option(3000, "--ratings", help="Number of ratings."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed → same bytes)."),
    fmt: str = typer.Option("ml-100k", "--format", help="ml-100k (u.data, u.item) | recbole (<name>.inter, "
                            "<name>.item) | llama-factory (dpo_ranking_<k>.json, sft.json, valid.json, test.json)."),
    name: str = typer.Option("synthetic", "--name", help="recbole: the atomic files' stem."),
    k: list[int] = typer.Option([3], "--k", help="llama-factory: negatives per sample (repeat for several files)."),
) -> None:
    """Write a synthetic dataset (for tests, tiny runs and trying a format out)."""
    from recranker.data import write_llama_factory, write_recbole_atomic, write_synthetic
    from recranker.errors import RecrankerError

    if fmt == "ml-100k":
        written = write_synthetic(out_dir, users, items, ratings, seed=seed)
    elif fmt == "recbole":
        written = write_recbole_atomic(out_dir, name, users, items, ratings, seed=seed)
    elif fmt == "llama-factory":
        written = write_llama_factory(out_dir, users, tuple(k), seed=seed)
    else:
        raise RecrankerError(f"synth --format: '{fmt}' is not one of ml-100k, recbole, llama-factory")
    typer.echo(f"wrote {', '.join(str(p) for p in written)}")
