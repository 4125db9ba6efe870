"""Build a W&B Report from a project's runs (the pipeline logs one run per stage execution,
grouped by the DVC experiment name, see src/recranker/tracking.py).

    WANDB_MODE=online python scripts/wandb_report.py --project recranker [--entity ME]

The report has: training-loss curves of `sft` and `dmpo` runs, bar charts of the hybrid / per-task
HR@k and NDCG@k of every `evaluate` run, and the preference AUC of every `pref-eval` run, each
grouped by experiment (W&B group = DVC_EXP_NAME). Runs are only *read*; nothing is trained.

Exits 0 with "skipped: offline" unless WANDB_MODE=online (the pipeline's own convention: unset
or disabled/offline means no network), and with "skipped: ..." when W&B is not installed or not
logged in, so CI can call it unconditionally. The Report API moved from `wandb.apis.reports` to
the `wandb-workspaces` package (`pip install wandb-workspaces`); both are tried.
"""

from __future__ import annotations

import argparse
import os
import sys

METRICS = [f"{m}/{k}" for m in ("backbone", "pointwise", "pairwise", "listwise", "hybrid")
           for k in ("HR@3", "NDCG@3", "HR@5", "NDCG@5")]


def _reports_api():
    try:
        import wandb_workspaces.reports.v2 as wr  # wandb ≥ 0.17 moved it here
        return wr
    except ImportError:
        pass
    try:
        import wandb.apis.reports as wr  # older wandb
        return wr
    except ImportError:
        return None


def build(wr, project: str, entity: str | None, title: str):
    """The report object (not yet saved)."""

    def runset(job: str):
        return wr.Runset(project=project, entity=entity or "", name=job, query=job)

    def grid(job: str, panels):
        return wr.PanelGrid(runsets=[runset(job)], panels=panels)

    return wr.Report(
        project=project,
        entity=entity or "",
        title=title,
        description="RecRanker / DMPO pipeline runs, grouped by DVC experiment (DVC_EXP_NAME).",
        blocks=[
            wr.H1("Training"),
            wr.P("Loss per step of the instruction tuning (sft) and preference optimisation (dmpo) runs."),
            grid("sft", [wr.LinePlot(title="SFT loss", x="Step", y=["train/loss"])]),
            grid("dmpo", [wr.LinePlot(title="DMPO loss", x="Step", y=["train/loss"])]),
            wr.H1("Ranking (evaluate)"),
            wr.P("Backbone order vs the LLM re-rankings and RecRanker's hybrid, per experiment."),
            grid("evaluate", [wr.BarPlot(title=m, metrics=[m]) for m in METRICS if "@5" in m]),
            wr.H1("Preference AUC (pref-eval)"),
            grid("pref-eval", [wr.RunComparer(diff_only="split")]),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", default=os.environ.get("WANDB_PROJECT", "recranker"))
    ap.add_argument("--entity", default=os.environ.get("WANDB_ENTITY"))
    ap.add_argument("--title", default="RecRanker / DMPO experiments")
    args = ap.parse_args(argv)

    if os.environ.get("WANDB_MODE", "disabled") != "online":
        print("skipped: offline (set WANDB_MODE=online to build the W&B report)")
        return 0
    try:
        import wandb
    except ImportError:
        print("skipped: wandb is not installed")
        return 0
    wr = _reports_api()
    if wr is None:
        print("skipped: no W&B Report API (pip install wandb-workspaces)")
        return 0
    try:
        api = wandb.Api(timeout=30)
        entity = args.entity or api.default_entity
    except Exception as exc:  # noqa: BLE001 — not logged in / no network: whatever the cause, skip
        print(f"skipped: W&B not reachable or not logged in ({type(exc).__name__}: {exc})")
        return 0
    report = build(wr, args.project, entity, args.title)
    report.save()
    print(f"report: {report.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
