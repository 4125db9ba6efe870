"""Where a dataset's raw files come from, and the copy of them that DVC tracks (stages `raw`, `prepare`)."""

from __future__ import annotations

from pathlib import Path

from stages import paths


def raw_folder(dataset: str, d) -> tuple[Path, Path, bool]:
    """Refresh data/raw/<dataset>/ from the source and return (source, copy, whether it changed).

    The source is datasets.<ds>.path (``d``), else $RECRANKER_DATA/<format folder>, else the checked
    download (into data/downloads/<ds>/); the copy holds the files the reader reads, rewritten only
    when their bytes differ (dvc.yaml: `prepare` depends on it, the stage `raw` refreshes it)."""
    import os

    from recranker.data import locate_raw, snapshot_raw

    source = locate_raw(
        d.format,
        category=d.category,
        path=d.path,
        data_root=os.environ.get("RECRANKER_DATA") or None,
        cache_dir=paths.downloads(dataset),
        allow_download=d.download,
        label=f"datasets.{dataset}.path",
    )
    copy = paths.raw(dataset)
    return source, copy, snapshot_raw(d.format, source, copy, category=d.category)
