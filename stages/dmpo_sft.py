"""Stage `dmpo-sft`: TALLRec-style SFT of the base model on the DMPO training samples (answer
"<positive, negative>", LoRA on q, k, v as the paper) → models/llm/dmpo-sft/, the start of `dmpo`
and pref-eval's "SFT only" model. Independent of RecRanker's `sft`."""

from __future__ import annotations

import typer

from stages import artifacts, dmpo_io, paths
from stages.common import params
from stages.launch import launch_training

CHECKPOINTS = paths.MODELS / "llm" / ".ckpt" / "dmpo-sft"  # outside the atomically replaced output


def dmpo_sft() -> None:
    """Train models/llm/dmpo-sft/; metrics/dmpo_sft.json; metrics/dmpo_sft_loss.csv."""
    import datasets

    from recranker.errors import RecrankerError
    from recranker.io import read_jsonl, write_json
    from recranker.llm.distributed import is_main, launch_info, shared_output_dir
    from recranker.llm.model import load_tokenizer
    from recranker.llm.sft import check_lengths, to_prompt_completion, train_sft
    from recranker.progress import training_progress
    from recranker.tracking import start_run

    datasets.disable_progress_bars()
    p = params("llm")
    launch_training("dmpo-sft", p)
    s = p.llm.dmpo_sft
    records: list[dict] = []
    for ds in dmpo_io.train_datasets(p):
        for row, where in read_jsonl(paths.preferences(ds) / dmpo_io.SFT_FILE, missing="run `preferences`"):
            to_prompt_completion(row, where)
            records.append(row)
    cfg = s.with_run(seed=p.seed, checkpoint_dir=str(CHECKPOINTS), deepspeed=p.llm.deepspeed)
    try:
        check_lengths(load_tokenizer(str(paths.base_model())), records, cfg.max_length)
    except RecrankerError as err:
        raise RecrankerError(f"llm.dmpo_sft.{err}") from None
    with start_run("dmpo-sft", s.model_dump(), enabled=is_main()) as run, \
            shared_output_dir(paths.llm("dmpo-sft")) as tmp:
        report = train_sft(paths.base_model(), records, [], tmp, cfg, callbacks=[training_progress("dmpo-sft")])
        if not is_main():  # the others wait (shared_output_dir) while rank 0 scores the model once
            return
        for point in report["curve"]:
            run.log({"train/loss": point["loss"]}, step=point["step"])
        metrics = {k: report[k] for k in ("final_train_loss", "steps", "seconds", "tokens", "n_train",
                                          "train_loss_mean", "bf16")}
        metrics["launch"] = launch_info()
        metrics["first_train_loss"] = report["curve"][0]["loss"] if report["curve"] else None
        metrics.update(dmpo_io.valid_auc(tmp, p))  # what llm.dmpo_sft.lr / max_steps are chosen on
        base = dmpo_io.valid_auc(None, p)  # the untuned model on the same pairs: what SFT must beat
        if base:
            metrics["base_valid_auc"], metrics["base_valid_auc_ci95"] = base["valid_auc"], base["valid_auc_ci95"]
        run.summary(metrics)
    seconds = metrics.pop("seconds")  # wall-clock: kept where no stage reads it (report reads dmpo_sft.json)
    write_json(paths.METRICS / "dmpo_sft.json", metrics)
    write_json(paths.timings("dmpo_sft.json"), {"seconds": seconds})
    artifacts.write_curve_csv(paths.METRICS / "dmpo_sft_loss.csv", report["curve"])
    typer.echo(f"dmpo-sft: {metrics['steps']} steps in {seconds:.0f}s, "
               f"loss {metrics['first_train_loss']:.3f} → {metrics['final_train_loss']:.3f}")
