"""Typed readers of what one stage hands to the next.

Each reader knows the file's place (`stages.paths`) and the command that writes it, so a missing
input is one line naming that command, e.g. ``data/processed/ml-100k/interactions.parquet: not
found (run `recranker prepare --dataset ml-100k`)``. Stages read their inputs only through here
(and never import another stage).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from recranker.errors import RecrankerError
from stages import paths


def _missing(path: Path, command: str) -> RecrankerError:
    return RecrankerError(f"{path}: not found (run `{command}`)")


def _prepare(dataset: str) -> str:
    return f"recranker prepare --dataset {dataset}"


def _backbone(dataset: str, backbone: str) -> str:
    return f"recranker backbone --dataset {dataset} --model {backbone}"


def _parquet(path: Path, command: str, columns=None):
    from recranker.io import read_parquet

    return read_parquet(path, missing=f"run `{command}`", columns=columns)


def _jsonl(path: Path, command: str):
    from recranker.io import read_jsonl

    return read_jsonl(path, missing=f"run `{command}`")


def _json(path: Path, command: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _missing(path, command) from None
    except json.JSONDecodeError as exc:
        raise RecrankerError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


# prepare ------------------------------------------------------------------------------------------


def interactions(dataset: str, columns=None):
    """data/processed/<ds>/interactions.parquet (user_id, item_id, rating, timestamp, split)."""
    return _parquet(paths.processed(dataset) / "interactions.parquet", _prepare(dataset), columns)


def items(dataset: str):
    """data/processed/<ds>/items.parquet (item_id, title, ...)."""
    return _parquet(paths.processed(dataset) / "items.parquet", _prepare(dataset))


def stats(dataset: str) -> dict:
    """data/processed/<ds>/stats.json (counts, rating scale)."""
    return _json(paths.processed(dataset) / "stats.json", _prepare(dataset))


def interactions_with_ranges(dataset: str):
    """(interactions, n_users, n_items): id ranges from stats.json when it has them, else the ids."""
    df = interactions(dataset)
    path = paths.processed(dataset) / "stats.json"
    st = _json(path, _prepare(dataset)) if path.is_file() else {}
    n_users = st.get("users", st.get("n_users"))
    n_items = st.get("items", st.get("n_items"))
    n_users = int(n_users) if isinstance(n_users, int) else int(df["user_id"].max()) + 1
    n_items = int(n_items) if isinstance(n_items, int) else int(df["item_id"].max()) + 1
    return df, n_users, n_items


# backbone -----------------------------------------------------------------------------------------


def candidates(dataset: str, backbone: str):
    """models/backbones/<ds>/<bb>/candidates.parquet (user_id, split, rank, item_id, score)."""
    return _parquet(paths.backbone(dataset, backbone) / "candidates.parquet", _backbone(dataset, backbone))


def candidates_and_targets(dataset: str, backbone: str, split: str = "test"):
    """(candidates user → items best first, targets user → held-out item of ``split``): what a
    re-ranking of ``split`` is evaluated on."""
    c = candidates(dataset, backbone)
    missing = {"user_id", "split", "rank", "item_id"} - set(c.columns)
    if missing:
        raise RecrankerError(f"candidates.parquet: missing column '{min(missing)}'")
    c = c[c["split"] == split].sort_values(["user_id", "rank"], kind="stable")
    cands = {int(u): g["item_id"].astype(int).tolist() for u, g in c.groupby("user_id", sort=True)}
    inter = interactions(dataset)
    held = inter[inter["split"] == split]
    targets = dict(zip(held["user_id"].astype(int).tolist(), held["item_id"].astype(int).tolist()))
    return cands, targets


def user_embeddings(dataset: str, backbone: str):
    """models/backbones/<ds>/<bb>/user_emb.npy."""
    from recranker.io import read_npy

    return read_npy(paths.backbone(dataset, backbone) / "user_emb.npy", missing=f"run `{_backbone(dataset, backbone)}`")


# sample / instruct --------------------------------------------------------------------------------


def sampled_users(dataset: str) -> dict:
    """data/sampled/<ds>/users.json."""
    return _json(paths.sampled(dataset) / "users.json", f"recranker sample --dataset {dataset}")


def train_instructions(dataset: str, check) -> list[dict]:
    """data/instructions/train/<ds>.jsonl; ``check(row, "file:line")`` validates each row early.

    (Parsers are passed in, so that this module imports no library code a stage does not run.)
    """
    rows = []
    for row, where in _jsonl(paths.train_instructions(dataset), f"recranker instruct --dataset {dataset}"):
        check(row, where)
        rows.append(row)
    return rows


def test_instructions(dataset: str, backbone: str, tasks, parse, split: str = "test") -> list:
    """data/instructions/{test,valid}/<ds>/<bb>.jsonl parsed by ``parse(row, "file:line")``, selected
    tasks only."""
    out, rows = [], 0
    path = paths.ranking_instructions(dataset, backbone, split)
    for row, where in _jsonl(path, f"recranker instruct --dataset {dataset}"):
        rows += 1
        ins = parse(row, where)
        if ins.task in tasks:
            out.append(ins)
    # an empty valid file is legitimate (no user's valid item among the candidates: evaluate says
    # so); an empty test file is a damaged input that would be ranked into empty predictions
    if split == "test" and not rows:
        raise RecrankerError(f"{path}: no instructions (empty file; run `recranker instruct --dataset {dataset}`)")
    return out


# rank ---------------------------------------------------------------------------------------------


def predictions(dataset: str, backbone: str, tasks, split: str = "test") -> dict[str, list[dict]]:
    """data/{predictions,valid_predictions}/<ds>/<bb>/<task>.jsonl of each task."""
    from recranker.io import read_jsonl

    cands, _ = candidates_and_targets(dataset, backbone, split)
    out, empty = {}, []
    for task in tasks:
        path = paths.predictions(dataset, backbone, split) / f"{task}.jsonl"
        rerun = f"run `recranker rank --dataset {dataset} --backbone {backbone} --split {split}`"
        if not path.is_file():
            raise RecrankerError(f"{path}: not found ({rerun} with rank.tasks including {task})")
        out[task] = [_checked_prediction(row, where, cands, split) for row, where in read_jsonl(path)]
        if not out[task]:
            empty.append(path)
    # every file empty on the valid split: no valid prompts at all, which evaluate explains; one
    # empty among others would silently drop that task from the choice of weights
    if empty and (split == "test" or len(empty) < len(out)):
        raise RecrankerError(f"{empty[0]}: no predictions (empty file; {rerun})")
    return out


def _checked_prediction(row: dict, where: str, cands: dict[int, list[int]], split: str) -> dict:
    """One predictions row as evaluate needs it, or one line naming file:line and the problem."""
    import math

    for key in ("user_id", "candidates", "scores"):
        if key not in row:
            raise RecrankerError(f"{where}: missing field '{key}'")
    user, items, scores = row["user_id"], row["candidates"], row["scores"]
    if isinstance(user, bool) or not isinstance(user, int):
        raise RecrankerError(f"{where}: user_id {user!r} is not an integer")
    if user not in cands:
        raise RecrankerError(f"{where}: user {user} has no {split} candidates (not a user of this dataset and backbone)")
    if not isinstance(items, list) or not isinstance(scores, list) or len(items) != len(scores) or not items:
        raise RecrankerError(f"{where}: need one score per candidate (got {_count(scores)} for {_count(items)})")
    known = set(cands[user])
    for item, score in zip(items, scores, strict=True):
        if isinstance(item, bool) or not isinstance(item, int) or item not in known:
            raise RecrankerError(f"{where}: candidate {item!r} is not among user {user}'s {split} candidates")
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise RecrankerError(f"{where}: score {score!r} of candidate {item} is not a finite number")
    return row


def _count(value) -> str:
    return str(len(value)) if isinstance(value, list) else repr(value)


# preferences: the DMPO branch reads its files through stages/dmpo_io.py


# models -------------------------------------------------------------------------------------------


def tuned_dir(kind: str) -> Path | None:
    """models/llm/<kind>/ for a tuned model, None for the untuned base."""
    if kind == "base":
        return None
    d = paths.llm(kind)
    if not d.is_dir():
        raise RecrankerError(f"{d}: not found (run `recranker {kind}`, or set rank.model: base)")
    return d


def write_curve_csv(path: Path, curve: list[dict]) -> None:
    """A training loss curve (step, loss) for `dvc plots`, atomically."""
    from recranker.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("step,loss\n" + "".join(f"{c['step']},{c['loss']:.6f}\n" for c in curve))


# experiments ---------------------------------------------------------------------------------------

KEPT = paths.METRICS / "experiments.json"  # finished experiments, tracked by git


def exp_show(saved: Path | None) -> list:
    """`dvc exp show --json` (all experiments of HEAD), or a saved copy; a workspace-only stand-in
    when this is not a DVC/git repository with a commit (then only the workspace is reported)."""
    if saved is not None:
        try:
            return json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RecrankerError(f"{saved}: cannot read a `dvc exp show --json` output ({exc})") from None
    done = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True,
                          check=False)
    if done.returncode == 0 and done.stdout.strip().startswith("["):
        return json.loads(done.stdout)
    print(f"report: `dvc exp show` failed ({done.stderr.strip().splitlines()[-1:] or ['?']}); "
               "reporting the workspace files only", file=sys.stderr)
    return [_workspace_only()]


def _workspace_only() -> dict:
    import yaml

    from stages.common import PARAMS_FILE

    params = yaml.safe_load(Path(PARAMS_FILE).read_text(encoding="utf-8")) if Path(PARAMS_FILE).is_file() else {}
    metrics = {}
    for f in sorted(paths.METRICS.rglob("*.json")):
        try:
            metrics[f.as_posix()] = {"data": json.loads(f.read_text(encoding="utf-8"))}
        except (OSError, json.JSONDecodeError):
            continue
    return {"rev": "workspace", "name": None, "data": {"params": {PARAMS_FILE: {"data": params}}, "metrics": metrics},
            "experiments": None}


def kept_experiments() -> list:
    """metrics/experiments.json: the finished experiments the repository keeps (`recranker exp --save`)."""
    if not KEPT.is_file():
        return []
    try:
        return json.loads(KEPT.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecrankerError(f"{KEPT}:{exc.lineno}: invalid JSON ({exc.msg})") from None
