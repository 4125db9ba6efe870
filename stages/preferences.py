"""Stage `preferences`: DMPO preference data from ratings; command `import-preferences`.

`preferences --dataset NAME` reads data/processed/<ds>/{interactions,items}.parquet (only the
splits in preferences.splits, default train, so a DMPO-tuned ranker never sees valid/test items)
and writes data/preferences/<ds>/{sft_train,pref_train,pref_valid,pref_test}.jsonl (one atomic
directory) and metrics/preferences/<ds>.json.
`import-preferences FILE --out OUT` converts LLaMA-Factory ranking data to the same JSONL.
"""

from __future__ import annotations

from pathlib import Path

import typer

from stages import artifacts, paths
from stages.common import params


def preferences(dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets).")) -> None:
    """Few-shot DMPO preference data of DATASET → data/preferences/<dataset>/."""
    from recranker.io import atomic_path, write_json, write_jsonl
    from recranker.preferences import (
        PreferenceConfig,
        build_preferences,
        preference_stats,
        sft_rows,
    )
    from recranker.prompts import domain_for_format
    from recranker.tracking import start_run

    p = params()
    dp = p.dataset(dataset)
    pp = p.preferences
    inter = artifacts.interactions(dataset)
    items = artifacts.items(dataset)
    inter = inter.loc[inter["split"].isin(pp.splits)]
    cfg = PreferenceConfig(
        dataset=dataset, domain=domain_for_format(dp.format), positive_above=pp.positive_above,
        min_positives=pp.min_positives, min_negatives=pp.min_negatives, history_len=pp.history_len,
        min_history=pp.min_history, k_negatives=pp.k_negatives, n_train=pp.n_train,
        n_valid=pp.n_valid, n_test=pp.n_test, max_title_chars=pp.max_title_chars,
    )  # fmt: skip
    with start_run(f"preferences:{dataset}", {"dataset": dataset, "seed": p.seed, **pp.model_dump()}) as run:
        splits = build_preferences(inter, items, cfg, p.seed)
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
    file: Path = typer.Argument(..., help="LLaMA-Factory ranking data (JSON list of {instruction, input, output: [chosen, rejected]})."),
    out: Path = typer.Option(..., "--out", help="Output JSONL (preference rows: prompt, chosen, rejected, meta)."),
) -> None:
    """Convert external pairwise preference data to recranker's preference JSONL."""
    from recranker.io import write_jsonl
    from recranker.preferences import import_llamafactory

    n = write_jsonl(out, import_llamafactory(file))
    typer.echo(f"import-preferences: {n} rows → {out}")
