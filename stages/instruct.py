"""Stage `instruct`: training instructions for the sampled users, test instructions for every
test user × backbone.

Reads data/processed/<ds>/{interactions,items}.parquet + stats.json (rating scale),
data/sampled/<ds>/users.json and models/backbones/<ds>/<bb>/candidates.parquet for each of
run.backbones. Writes data/instructions/train/<ds>.jsonl and data/instructions/test/<ds>/<bb>.jsonl (each
written atomically; apart, so that SFT does not re-run when only the test prompts change) and
metrics/instruct/<ds>.json. With instruct.enhance, the rating MF
(recranker.backbones.rating_mf) gives cross-fitted training hints and train-only test hints.
"""

from __future__ import annotations

import typer

from stages import artifacts, paths
from stages.common import params


def instruct(dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets).")) -> None:
    """Build the instruction files of DATASET → data/instructions/{train,test}/."""
    import functools

    import pandas as pd

    from recranker import sampling
    from recranker.io import atomic_paths, write_json, write_jsonl
    from recranker.prompts.corpus import DatasetContext, make_corpus
    from recranker.prompts.enhance import train_only_predict
    from recranker.prompts.ranking_rows import build_test, test_stats, valid_users
    from recranker.prompts.templates import domain_for_format
    from recranker.prompts.text import RatingScale
    from recranker.prompts.training import build_training
    from recranker.tracking import start_run

    p = params("instruct")
    dp = p.dataset(dataset)
    ip = p.instruct
    inter = artifacts.interactions(dataset)
    items = artifacts.items(dataset)
    stats = artifacts.stats(dataset)
    multiset = sampling.multiset_from_json(artifacts.sampled_users(dataset))
    cands = {bb: artifacts.candidates(dataset, bb) for bb in p.run.backbones}
    if ip.max_test_users:
        from recranker.data import test_user_subset

        keep = test_user_subset(inter.loc[inter["split"] == "test", "user_id"], ip.max_test_users, p.seed)
        cands = {bb: c[c["user_id"].isin(keep)].reset_index(drop=True) for bb, c in cands.items()}

    ctx = DatasetContext(
        name=dataset, domain=domain_for_format(dp.format), scale=RatingScale.from_stats(stats),
        like_threshold=dp.like_threshold, dislike_threshold=dp.dislike_threshold,
    )
    corpus = make_corpus(inter, items, ctx, ip, p.seed)
    fit_predict = None
    if ip.enhance:
        import torch

        from recranker.backbones.rating_mf import fit_predict_ratings

        torch.set_num_threads(ip.threads)

        fit_predict = functools.partial(
            fit_predict_ratings, n_users=corpus.n_users, n_items=corpus.n_items,
            seed=p.seed, config=ip.rating_mf,
        )  # fmt: skip
        union = pd.concat(cands.values())[["user_id", "item_id"]].drop_duplicates(ignore_index=True)
        union["rating_pred"] = train_only_predict(inter, union, fit_predict)
        cands = {bb: c.merge(union, on=["user_id", "item_id"], how="left") for bb, c in cands.items()}

    config = {"dataset": dataset, "seed": p.seed, **ip.model_dump()}
    metrics: dict = {"test": {}}
    with start_run(f"instruct:{dataset}", config) as run:
        train_rows, metrics["train"] = build_training(corpus, multiset, ip, p.seed, fit_predict)
        test_dir = paths.test_instructions(dataset, "any").parent
        valid_dir = paths.valid_instructions(dataset, "any").parent
        metrics["valid"] = {}
        # the three outputs change together: a kill never leaves train new and test/valid old
        with atomic_paths((paths.train_instructions(dataset), False), (test_dir, True), (valid_dir, True)) as (
                train_tmp, test_tmp, valid_tmp):
            write_jsonl(train_tmp, train_rows)
            for bb, c in cands.items():
                rows = list(build_test(corpus, c, bb, ip, p.seed))
                write_jsonl(test_tmp / f"{bb}.jsonl", rows)
                metrics["test"][bb] = test_stats(rows)
            # Validation prompts choose the hybrid's weights. Only users whose valid item is among
            # the candidates can score under any weights, so only they are ranked (a seeded subset
            # of them with instruct.max_valid_users); their test items play no part.
            for bb, c in cands.items():
                users = valid_users(corpus, c, ip.max_valid_users, p.seed)
                rows = list(build_test(corpus, c, bb, ip, p.seed, split="valid", users=users))
                write_jsonl(valid_tmp / f"{bb}.jsonl", rows)
                metrics["valid"][bb] = test_stats(rows)
        write_json(paths.metrics("instruct") / f"{dataset}.json", metrics)
        run.summary({"train_rows": metrics["train"]["rows"],
                     **{f"valid_rows/{bb}": m["rows"] for bb, m in metrics["valid"].items()},
                     **{f"test_rows/{bb}": m["rows"] for bb, m in metrics["test"].items()}})
    per_task = ", ".join(f"{t} {n}" for t, n in metrics["train"]["per_task"].items())
    tests = ", ".join(f"{bb} {m['rows']}" for bb, m in metrics["test"].items())
    typer.echo(f"instruct {dataset}: train {metrics['train']['rows']} ({per_task}); test {tests}"
               f" → {paths.train_instructions(dataset)}, {test_dir}/")
