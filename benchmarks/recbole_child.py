"""One RecBole training run on an exported split; prints one JSON line. Run by backbones.py.

This file runs under RecBole's own interpreter (``--recbole PYTHON``), so it imports nothing
from recranker. The ``.inter`` file it reads carries, per user, the training items then the
valid item then the test item, with ``timestamp`` = position: RecBole's leave-one-out by time
(``LS valid_and_test``, order ``TO``) then reproduces our split exactly, and its full-ranking
evaluation masks the training items (valid) and training + valid items (test), as ours does.

    python benchmarks/recbole_child.py DATA_DIR DATASET MODEL SEED THREADS HPARAMS_JSON

RecBole 1.2.1 predates numpy 2, scipy 1.12 and setuptools' removal of pkg_resources; an
environment where it runs beside our torch:

    python -m venv /tmp/rbvenv && /tmp/rbvenv/bin/pip install torch==2.13.0
    /tmp/rbvenv/bin/pip install recbole==1.2.1 "numpy<2" "scipy<1.12" "setuptools<70"
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

# Our names -> RecBole's model classes; hyperparameters are mapped from ours in backbones.py.
MODELS = {"mf": "BPR", "lightgcn": "LightGCN", "sgl": "SGL", "sasrec": "SASRec",
          "bert4rec": "BERT4Rec"}  # fmt: skip
KS = [3, 5, 10, 20]


def same_split(path: str, data, valid, test) -> bool:
    """Whether RecBole held out exactly each user's last (test) and second-last (valid) row."""
    import pandas as pd

    rows = pd.read_csv(path, sep="\t", dtype=str)
    rows = rows.sort_values(["user_id:token", "timestamp:float"], key=lambda c: c.astype(float))
    last_two = rows.groupby("user_id:token").tail(2)
    expected = {
        "test": last_two.groupby("user_id:token").tail(1),
        "valid": last_two.groupby("user_id:token").head(1),
    }
    for split, loader in (("valid", valid), ("test", test)):
        feat = loader.dataset.inter_feat
        users = data.id2token("user_id", feat["user_id"].numpy())
        items = data.id2token("item_id", feat["item_id"].numpy())
        want = expected[split]
        if dict(zip(users, items, strict=True)) != dict(
            zip(want["user_id:token"], want["item_id:token"], strict=True)
        ):
            return False
    return True


def main() -> None:
    data_dir, dataset, model, seed, threads, hparams = sys.argv[1:7]
    # RecBole saves its best model with torch.save and reloads it with a plain torch.load,
    # which torch >= 2.6 refuses for non-tensor objects unless told otherwise.
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    torch.set_num_threads(int(threads))
    name = MODELS[model]
    config = Config(
        model=name,
        dataset=dataset,
        config_dict={
            "data_path": data_dir, "checkpoint_dir": f"{data_dir}/saved", "device": "cpu",
            "use_gpu": False, "seed": int(seed), "reproducibility": True, "state": "ERROR",
            "show_progress": False, "worker": 0, "log_wandb": False,
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                          "mode": "full"},
            "metrics": ["Hit", "NDCG"], "topk": KS, "valid_metric": "NDCG@10",
            "eval_step": 1, "eval_batch_size": 4096, **json.loads(hparams),
        },
    )  # fmt: skip
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    split_ok = same_split(f"{data_dir}/{dataset}/{dataset}.inter", data, valid, test)
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(name)(config, train.dataset)
    trainer = get_trainer(config["MODEL_TYPE"], name)(config, net)

    train_seconds, epochs = 0.0, 0
    train_epoch = trainer._train_epoch

    def timed_epoch(*args, **kwargs):  # time training only, as our FitResult does
        nonlocal train_seconds, epochs
        t0 = time.perf_counter()
        out = train_epoch(*args, **kwargs)
        train_seconds += time.perf_counter() - t0
        epochs += 1
        return out

    trainer._train_epoch = timed_epoch
    trainer.fit(train, valid, saved=True, show_progress=False)
    t0 = time.perf_counter()
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    eval_s = time.perf_counter() - t0
    best_epoch = epochs - min(trainer.cur_step, epochs)
    test_metrics = {k.replace("hit", "HR").replace("ndcg", "NDCG"): float(v) for k, v in result.items()}
    print(json.dumps({
        "model": model, "recbole_model": name, "seed": int(seed), "epochs": epochs,
        "best_epoch": best_epoch, "train_s": round(train_seconds, 2),
        "sec_per_epoch": round(train_seconds / max(epochs, 1), 4), "eval_s": round(eval_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "test": test_metrics, "n_users": int(data.user_num - 1), "n_items": int(data.item_num - 1),
        "n_inter": len(data.inter_feat), "same_split": split_ok, "threads": int(threads),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
