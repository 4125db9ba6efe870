"""Stage `sample`: draw the users whose data becomes instruction-tuning instructions.

Reads data/processed/<ds>/interactions.parquet (q_u = training interactions per user) and, in
adaptive mode, models/backbones/<ds>/<bb>/user_emb.npy (bb = sampling.embeddings_backbone or the
first of run.backbones). Writes data/sampled/<ds>/users.json and metrics/sample/<ds>.json.
"""

from __future__ import annotations

import typer

from stages import artifacts, paths
from stages.common import params


def sample(dataset: str = typer.Option(..., help="Dataset name (a key of params.yaml: datasets).")) -> None:
    """Adaptive (or uniform) user sampling for DATASET → data/sampled/<dataset>/users.json."""
    import numpy as np

    from recranker import sampling
    from recranker.io import write_json
    from recranker.tracking import start_run

    p = params("sampling")
    p.dataset(dataset)
    sp = p.sampling
    df = artifacts.interactions(dataset, columns=["user_id", "split"])
    n_users = int(df["user_id"].max()) + 1
    q = np.bincount(df.loc[df["split"] == "train", "user_id"].to_numpy(), minlength=n_users)

    emb = None
    bb = sp.embeddings_backbone or p.run.backbones[0]
    if sp.mode == "adaptive":
        emb = artifacts.user_embeddings(dataset, bb)
    config = {"dataset": dataset, "seed": p.seed, "embeddings_backbone": bb, **sp.model_dump()}
    with start_run(f"sample:{dataset}", config) as run:
        result = sampling.sample_users(q, emb, sp, seed=p.seed)
        out = sampling.users_json(result, q, sp)
        out["config"] = config
        write_json(paths.sampled(dataset) / "users.json", out)
        write_json(paths.metrics("sample") / f"{dataset}.json", out["metrics"])
        run.summary(out["metrics"])
    m = out["metrics"]
    typer.echo(
        f"sample {dataset} ({sp.mode}): {m['instances']} instances, {m['distinct_users']} distinct "
        f"users, Gini {m['gini_multiplicity']:.3f}, long-tail share {m['long_tail_share_instances']:.3f}"
        f" → {paths.sampled(dataset) / 'users.json'}"
    )
