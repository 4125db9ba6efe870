"""Stages `preferences` (DMPO samples from ratings) and `import-preferences` (the authors' files).

`preferences --dataset NAME` reads data/processed/<ds>/{interactions,items}.parquet (only the
splits in preferences.splits, default train, so a DMPO-tuned ranker never sees valid/test items)
and writes data/preferences/<ds>/{sft_train,pref_train,pref_valid,pref_test}.jsonl (one atomic
directory) and metrics/preferences/<ds>.json.
`import-preferences --name NAME` (the DVC stage import-preferences@NAME, one per key of
preferences.imported) converts the LLaMA-Factory files of preferences.imported.<NAME> to the same
four files in data/preferences/<NAME>/, so `dmpo-sft`, `dmpo` and `pref-eval` run on them when NAME
is in llm.dmpo.datasets / llm.pref_eval.datasets.
"""

from __future__ import annotations

import typer

from stages import artifacts, paths
from stages.common import params


def preferences(dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets).")) -> None:
    """Few-shot DMPO preference data of DATASET → data/preferences/<dataset>/."""

    from recranker.dmpo.samples import (
        build_preferences,
        check_no_leakage,
        preference_stats,
        sft_rows,
    )
    from recranker.io import atomic_path, write_json, write_jsonl
    from recranker.prompts.templates import domain_for_format
    from recranker.tracking import start_run

    p = params("preferences")
    dp = p.dataset(dataset)
    pp = p.preferences
    inter = artifacts.interactions(dataset)
    items = artifacts.items(dataset)
    inter = inter.loc[inter["split"].isin(pp.splits)]
    with start_run(f"preferences:{dataset}", {"dataset": dataset, "seed": p.seed, **pp.model_dump()}) as run:
        splits = build_preferences(inter, items, pp, p.seed, dataset=dataset, domain=domain_for_format(dp.format))
        check_no_leakage(splits)
        with atomic_path(paths.preferences(dataset), is_dir=True) as tmp:
            write_jsonl(tmp / "sft_train.jsonl", sft_rows(splits["train"]))
            for split, rows in splits.items():
                write_jsonl(tmp / f"pref_{split}.jsonl", rows)
        stats = preference_stats(splits)
        write_json(paths.metrics("preferences") / f"{dataset}.json", stats)
        run.summary({f"{s}/samples": v["samples"] for s, v in stats.items()})
    counts = ", ".join(f"{s} {v['samples']}" for s, v in stats.items())
    typer.echo(f"preferences {dataset}: {counts} → {paths.preferences(dataset)}")


def import_preferences(
    name: str = typer.Option(..., "--name", help="Key of params.yaml preferences.imported."),
) -> None:
    """The LLaMA-Factory files of preferences.imported.<NAME> → data/preferences/<NAME>/ (the DVC
    stage import-preferences@<NAME>); metrics/preferences/<NAME>.json counts what they hold."""
    from pathlib import Path

    from recranker.dmpo.importer import import_eval, import_ranking, import_sft, import_stats
    from recranker.dmpo.samples import sft_rows
    from recranker.errors import RecrankerError
    from recranker.io import atomic_path, write_json, write_jsonl

    p = params()
    if name not in p.preferences.imported:
        known = ", ".join(sorted(p.preferences.imported)) or "none"
        raise RecrankerError(f"params.yaml: preferences.imported.{name}: not configured (configured: {known})")
    src = p.preferences.imported[name]
    folder = Path(src.path)
    if not folder.is_dir():
        raise RecrankerError(f"params.yaml: preferences.imported.{name}.path: {folder} is not a folder")
    splits = {"train": import_ranking(folder / src.train, name, src.k, "train"),
              "valid": import_eval(folder / src.valid, name, "valid") if src.valid else [],
              "test": import_eval(folder / src.test, name, "test")}  # fmt: skip
    sft = import_sft(folder / src.sft, name) if src.sft else sft_rows(splits["train"])
    with atomic_path(paths.preferences(name), is_dir=True) as tmp:
        write_jsonl(tmp / "sft_train.jsonl", sft)
        for split, rows in splits.items():
            write_jsonl(tmp / f"pref_{split}.jsonl", rows)
    stats = import_stats(splits, sft if src.sft else ())
    write_json(paths.metrics("preferences") / f"{name}.json", {**stats, "sft": {"samples": len(sft)}})
    counts = ", ".join(f"{s} {v['samples']}" for s, v in stats.items())
    shared = ", ".join(f"{s} {v['histories_in_train']}" for s, v in stats.items() if v.get("histories_in_train"))
    typer.echo(f"import-preferences {name}: sft {len(sft)}, {counts} → {paths.preferences(name)}"
               + (f" (histories also in training: {shared})" if shared else ""))
