"""Stage `raw`: the raw files of one dataset, copied into data/raw/<ds>/ (what `prepare` reads).

The source is found as `prepare` always found it: datasets.<ds>.path (a folder or the official
.zip), else $RECRANKER_DATA/<format folder>, else the checked download (kept in
data/downloads/<ds>/). DVC cannot see an environment variable or a path outside the project, so
this stage is `always_changed` in dvc.yaml: every `dvc repro` runs it, it rewrites the copy only
when the source's bytes differ, and `prepare` (which depends on data/raw/<ds>) re-runs exactly
when the raw data changed; dvc.lock records the raw data's hash.
"""

from __future__ import annotations

import typer

from stages import raw_source
from stages.common import params


def raw(
    dataset: str = typer.Option(..., "--dataset", help="Dataset name (a key of params.yaml: datasets)."),
) -> None:
    """Copy DATASET's raw files into data/raw/<dataset>/ when they changed."""
    source, copy, changed = raw_source.raw_folder(dataset, params().dataset(dataset))
    typer.echo(f"raw {dataset}: {source} → {copy}/ ({'updated' if changed else 'unchanged'})")
