"""Command `exp`: run one paper table/figure as DVC experiments (`dvc exp run -S ...` per variant).

Not a DVC stage: it drives DVC. The recipes themselves are YAML files of params overrides
(src/recranker/recipes/, read by `recranker.experiments`), each variant checked against the params
schema before anything runs; docs/experiments.md lists them with their costs.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import typer


def _list() -> None:
    from recranker.experiments import RECIPES

    width = max(len(r.name) for r in RECIPES)
    for r in RECIPES:
        tag = " [GPU-only]" if r.gpu_only else ""
        typer.echo(f"{r.name:{width}s}  {r.paper}{tag}: {len(r.variants)} variant(s) "
                   f"({', '.join(v.name for v in r.variants)})")


def save_kept() -> int:
    """Merge the finished experiments of `dvc exp show` into metrics/experiments.json; return how
    many it keeps (newer results of the same name replace older ones)."""
    from recranker.io import write_json
    from recranker.report.expshow import finished, with_full_metrics
    from stages.artifacts import KEPT, exp_show, kept_experiments

    live = with_full_metrics(finished(exp_show(None)), committed_file)
    names = {e.get("name") for base in live for e in base["experiments"]}
    old = [{**b, "experiments": [e for e in b["experiments"] if e.get("name") not in names]} 
           for b in kept_experiments()]
    kept = live + [b for b in old if b["experiments"]]
    write_json(KEPT, kept)
    return sum(len(b["experiments"]) for b in kept)


def committed_file(rev: str | None, path: str) -> str | None:
    """PATH's text at commit REV (an experiment's metrics file, tracked by git), or None."""
    if not rev or not path.endswith(".json"):
        return None
    done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else None


def check_overrides(recipe_name: str, variant: str, overrides: dict) -> None:
    """The params file this variant would run with must validate (one line naming the key)."""
    import copy

    import yaml

    from recranker.errors import RecrankerError
    from stages.common import PARAMS_FILE
    from stages.params import check_params

    base = yaml.safe_load(open(PARAMS_FILE, encoding="utf-8")) or {}  # noqa: SIM115
    tree = copy.deepcopy(base)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise RecrankerError(f"recipe {recipe_name}, variant {variant}: {key}: not a params.yaml key")
        node[leaf] = value
    check_params(tree, f"recipe {recipe_name}, variant {variant}")


def exp(
    name: str = typer.Argument(None, help="Recipe name (see --list)."),
    list_: bool = typer.Option(False, "--list", help="List the recipes and exit."),
    save: bool = typer.Option(False, "--save", help="Keep the finished experiments' results in "
                              "metrics/experiments.json (commit it: the report of a fresh clone reads it)."),
    variant: list[str] = typer.Option(None, "--variant", help="Run only these variants (repeatable)."),
    queue: bool = typer.Option(False, "--queue", help="Queue the experiments (`dvc queue start` runs them)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the dvc commands without running them."),
    paper_scale: bool = typer.Option(False, "--paper-scale",
                                     help="The paper's scale (LLaMA-2-7B, full FT, DeepSpeed, vLLM): GPU only."),
    temp: bool = typer.Option(True, "--temp/--workspace",
                              help="Run each variant in a temporary copy (default) or in the workspace."),
) -> None:
    """Run every variant of a recipe as a named DVC experiment: `recranker exp rr-ablation`."""
    from recranker.errors import RecrankerError
    from recranker.experiments import exp_run_args, recipe, select

    if list_:
        _list()
        return
    if save:
        from stages.artifacts import KEPT

        typer.echo(f"kept {save_kept()} finished experiment(s) in {KEPT}")
        return
    if not name:
        raise RecrankerError("exp: give a recipe name (`recranker exp --list` shows them)")
    r = recipe(name)
    variants = select(r, variant)
    for v in variants:
        check_overrides(name, v.name, r.overrides(v, paper_scale))
    commands = [exp_run_args(r, v, paper_scale=paper_scale, queue=queue, temp=temp) for v in variants]
    if not temp and not queue and len(commands) > 1 and not dry_run:
        # `dvc exp run -S` in the workspace edits params.yaml, so the next variant would inherit it
        raise RecrankerError("exp: --workspace runs one variant at a time (add --variant NAME)")
    for argv in commands:
        typer.echo("dvc " + shlex.join(argv))
        if dry_run:
            continue
        done = subprocess.run([sys.executable, "-m", "dvc", *argv], check=False)
        if done.returncode:
            raise RecrankerError(f"exp {name}: `dvc {shlex.join(argv[:4])}` failed (exit {done.returncode})")
    if queue and not dry_run:
        typer.echo("queued; run them with `dvc queue start -j 1` (one at a time on a small machine), "
                   "follow with `dvc queue status`, then `dvc exp show` / `recranker report`")
