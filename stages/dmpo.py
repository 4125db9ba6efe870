"""Stage `dmpo`: multi-negative preference optimisation from models/llm/dmpo-sft (or the base model:
llm.dmpo.init) on the DMPO training samples, k pairwise prompts each."""

from __future__ import annotations

import typer

from stages import artifacts, dmpo_io, paths
from stages.common import params
from stages.launch import launch_training

CHECKPOINTS = paths.MODELS / "llm" / ".ckpt" / "dmpo"  # outside the atomically replaced output


def dmpo() -> None:
    """Train models/llm/dmpo/; metrics/dmpo.json; metrics/dmpo_loss.csv."""
    import datasets

    from recranker.dmpo.samples import subsample
    from recranker.dmpo.train import train_dmpo
    from recranker.io import write_json
    from recranker.llm.distributed import is_main, launch_info, shared_output_dir
    from recranker.progress import training_progress
    from recranker.tracking import start_run

    datasets.disable_progress_bars()  # tokenising takes seconds; keep the DVC log readable
    p = params("llm")
    launch_training("dmpo", p)
    d = p.llm.dmpo
    records: list[dict] = []
    for ds in dmpo_io.train_datasets(p):
        records += dmpo_io.read_preferences(paths.preferences(ds) / dmpo_io.TRAIN_FILE, d.k)
    records = subsample(records, d.max_train, p.seed)
    lora = p.llm.dmpo_sft.lora if p.llm.dmpo_sft.method == "lora" else None  # the adapter of init: base
    cfg = d.with_run(seed=p.seed, checkpoint_dir=str(CHECKPOINTS), deepspeed=p.llm.deepspeed, lora=lora)
    with start_run("dmpo", d.model_dump(), enabled=is_main()) as run, \
            shared_output_dir(paths.llm("dmpo")) as tmp:
        report = train_dmpo(paths.llm("dmpo-sft"), paths.base_model(), records, tmp, cfg,
                            callbacks=[training_progress("dmpo")])
        if not is_main():  # the others wait (shared_output_dir) while rank 0 scores the model once
            return
        for point in report["curve"]:
            run.log({"train/loss": point["loss"]}, step=point["step"])
        metrics = {k: report[k] for k in ("k", "beta", "steps", "seconds", "n_train", "first_train_loss",
                                          "final_train_loss", "final_reward_margin", "final_reward_accuracy",
                                          "bf16")}
        metrics["launch"] = launch_info()
        metrics.update(dmpo_io.valid_auc(tmp, p))  # what llm.dmpo.lr / max_steps are chosen on
        metrics["datasets"] = dmpo_io.train_datasets(p)
        metrics["init"] = d.init
        run.summary(metrics)
    seconds = metrics.pop("seconds")  # wall-clock: kept where no stage reads it (report reads dmpo.json)
    write_json(paths.METRICS / "dmpo.json", metrics)
    write_json(paths.timings("dmpo.json"), {"seconds": seconds})
    artifacts.write_curve_csv(paths.METRICS / "dmpo_loss.csv", report["curve"])
    typer.echo(f"dmpo: k={d.k}, {metrics['steps']} steps in {seconds:.0f}s, "
               f"loss {metrics['first_train_loss']:.3f} → {metrics['final_train_loss']:.3f}")
