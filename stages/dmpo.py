"""Stage `dmpo`: multi-negative preference optimisation from the SFT model (or the base model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from stages import paths
from stages.common import params

CHECKPOINTS = paths.MODELS / "llm" / ".ckpt" / "dmpo"  # outside the atomically replaced output
TRAIN_FILE = "pref_train.jsonl"
TEST_FILE = "pref_test.jsonl"


def read_preferences(path: Path, k: int) -> list[dict]:
    """Preference JSONL → records, validated with file:line (k = negatives needed per record)."""
    from recranker.io import read_jsonl
    from recranker.llm.dmpo import to_preference

    rows = []
    for row, where in read_jsonl(path, missing="the `preferences` stage writes it"):
        to_preference(row, k, where)
        rows.append(row)
    return rows


def subsample(rows: list[dict], limit: int, seed: int) -> list[dict]:
    """At most ``limit`` rows (0 = all), a seeded random subset in file order."""
    if not limit or len(rows) <= limit:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=limit, replace=False))
    return [rows[i] for i in keep]


def dmpo_datasets(p) -> list[str]:
    return list(p.llm.dmpo.datasets or p.run.datasets)


def dmpo() -> None:
    """Train models/llm/dmpo/ from models/llm/sft/; metrics/dmpo.json; metrics/dmpo_loss.csv."""
    import datasets

    from recranker.io import atomic_path, write_json
    from recranker.llm.dmpo import DMPOSettings, train_dmpo
    from recranker.tracking import start_run
    from stages.sft import lora_settings, write_curve_csv

    datasets.disable_progress_bars()  # tokenising takes seconds; keep the DVC log readable
    p = params()
    d = p.llm.dmpo
    records: list[dict] = []
    for ds in dmpo_datasets(p):
        p.dataset(ds)
        records += read_preferences(paths.preferences(ds) / TRAIN_FILE, d.k)
    records = subsample(records, d.max_train, p.seed)
    cfg = DMPOSettings(
        seed=p.seed, beta=d.beta, k=d.k, max_steps=d.max_steps, lr=d.lr, warmup_steps=d.warmup_steps,
        batch_size=d.batch_size, grad_accum=d.grad_accum, max_length=d.max_length, save_steps=d.save_steps,
        logging_steps=d.logging_steps, bf16=d.bf16, checkpoint_dir=str(CHECKPOINTS),
        deepspeed=p.llm.deepspeed, init=d.init,
        lora=lora_settings(p) if p.llm.sft.method == "lora" else None,
    )
    with start_run("dmpo", d.model_dump()) as run, atomic_path(paths.llm("dmpo"), is_dir=True) as tmp:
        report = train_dmpo(paths.llm("sft"), paths.base_model(), records, tmp, cfg)
        for point in report["curve"]:
            run.log({"train/loss": point["loss"]}, step=point["step"])
        metrics = {k: report[k] for k in ("k", "beta", "steps", "seconds", "n_train", "first_train_loss",
                                          "final_train_loss", "final_reward_margin", "final_reward_accuracy")}
        metrics["datasets"] = dmpo_datasets(p)
        run.summary(metrics)
    write_json(paths.METRICS / "dmpo.json", metrics)
    write_curve_csv(paths.METRICS / "dmpo_loss.csv", report["curve"])
    typer.echo(f"dmpo: k={d.k}, {metrics['steps']} steps in {metrics['seconds']:.0f}s, "
               f"loss {metrics['first_train_loss']:.3f} → {metrics['final_train_loss']:.3f}")
