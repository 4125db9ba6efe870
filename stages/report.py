"""Stage `report`: reports/README.md + reports/report.html + reports/plots/*.png from every experiment.

Reads `dvc exp show --json` (workspace, baseline and experiments; or a saved copy with
--exp-show) plus the finished experiments the repository keeps (metrics/experiments.json, written
by `recranker exp --save`: a fresh clone has no local experiment refs, yet renders the same
report), metrics/pref_explain.json, data/processed/*/stats.json and dvc.lock; the library
(`recranker.report`) builds the tables and plots. Missing experiments appear as "not run".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import typer

from stages import artifacts, paths

REPORTS = Path("reports")
RESULTS = Path("benchmarks/results")  # learning_curve*.json: benchmarks/learning_curve.py
PACKAGES = ("recranker", "torch", "transformers", "peft", "trl", "accelerate", "dvc", "wandb", "numpy", "pandas",
            "scikit-learn", "matplotlib")


def locations():
    from recranker.report import Locations

    m = paths.METRICS.as_posix()
    ev = paths.metrics("evaluate").as_posix()
    return Locations(
        evaluate=ev + "/{dataset}/{backbone}.json",
        backbone=paths.metrics("backbone").as_posix() + "/{dataset}/{backbone}.json",
        prepare=paths.metrics("prepare").as_posix() + "/{dataset}.json",
        sft=f"{m}/sft.json", dmpo=f"{m}/dmpo.json", pref_eval=f"{m}/pref_eval.json",
        pref_backbone=paths.metrics("pref_backbone").as_posix() + "/{dataset}.json",
    )


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def checksums(datasets) -> dict[str, dict[str, str]]:
    """sha256 of each dataset's stats.json and the dvc.lock hash of its processed folder."""
    import yaml

    lock = {}
    if Path("dvc.lock").is_file():
        for stage in (yaml.safe_load(Path("dvc.lock").read_text(encoding="utf-8")) or {}).get("stages", {}).values():
            for out in stage.get("outs", []):
                lock[out.get("path")] = out.get("md5") or out.get("hash") or ""
    result = {}
    for ds in datasets:
        entry = {}
        stats = paths.processed(ds) / "stats.json"
        if stats.is_file():
            entry["stats.json sha256"] = hashlib.sha256(stats.read_bytes()).hexdigest()[:16]
        key = paths.processed(ds).as_posix()
        if lock.get(key):
            entry[f"dvc.lock {key}"] = lock[key]
        if entry:
            result[ds] = entry
    return result


def defaults_for(params: dict) -> dict:
    """The schema's defaults, with each configured dataset's defaults for its format."""
    from stages.params import Params
    from stages.params.data import DatasetParams

    d = Params().model_dump()
    d["datasets"] = {name: DatasetParams(format=sec["format"]).model_dump()
                     for name, sec in sorted((params.get("datasets") or {}).items())
                     if isinstance(sec, dict) and "format" in sec}
    return d


def effective(params: dict) -> dict | None:
    """params.yaml validated (defaults filled in), or None when it does not validate."""
    from pydantic import ValidationError

    from stages.params import Params

    try:
        return Params.model_validate(params).model_dump()
    except ValidationError:
        return None


def report(
    exp_show_file: Path = typer.Option(None, "--exp-show", help="Read a saved `dvc exp show --json` output."),
    out: Path = typer.Option(REPORTS, "--out", help="Output folder."),
    paper_scale: bool = typer.Option(False, "--paper-scale", help="Show the recipes' paper-scale experiments."),
) -> None:
    """Write reports/: README.md (Markdown), report.html (self-contained) and plots/*.png."""
    from recranker.io import atomic_path
    from recranker.report import Inputs, build, parse_exp_show, render_plots, to_html, to_markdown
    from recranker.report.expshow import with_full_metrics, with_kept
    from stages.exp import committed_file

    live = artifacts.exp_show(exp_show_file)
    if exp_show_file is None:  # live experiments: their whole metrics files, intervals included
        live = with_full_metrics(live, committed_file)
    experiments = parse_exp_show(with_kept(live, artifacts.kept_experiments()))
    ws = next((e for e in experiments if e.kind == "workspace"), None)
    params = ws.params if ws else {}
    explain = paths.METRICS / "pref_explain.json"
    explanations = json.loads(explain.read_text(encoding="utf-8")).get("explanations") if explain.is_file() else None
    curves = {f.stem: json.loads(f.read_text(encoding="utf-8")) for f in sorted(RESULTS.glob("learning_curve*.json"))}
    inp = Inputs(experiments, locations(), defaults_for(params), versions(),
                 checksums((params.get("run") or {}).get("datasets") or []), explanations, paper_scale,
                 effective(params), curves)
    rep = build(inp)
    images = render_plots(rep)
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / "plots").mkdir()
        for name, png in sorted(images.items()):
            (tmp / "plots" / f"{name}.png").write_bytes(png)
        (tmp / "README.md").write_text(to_markdown(rep), encoding="utf-8")
        (tmp / "report.html").write_text(to_html(rep, images), encoding="utf-8")
    n = sum(e.kind == "experiment" for e in experiments)
    typer.echo(f"report: {n} experiment(s), {len(images)} plot(s) → {out}/README.md, {out}/report.html")
