"""Stage `sft`: instruction-tune the base model on every configured dataset's train.jsonl."""

from __future__ import annotations

import typer

from stages import artifacts, paths
from stages.common import params
from stages.launch import launch_training

CHECKPOINTS = paths.MODELS / "llm" / ".ckpt" / "sft"  # outside the atomically replaced output


def sft() -> None:
    """Train models/llm/sft/ (adapter + tokenizer + log); metrics/sft.json; metrics/sft_loss.csv."""
    import datasets

    from recranker.errors import ParamError, RecrankerError
    from recranker.io import write_json
    from recranker.llm.distributed import is_main, launch_info, shared_output_dir
    from recranker.llm.model import load_tokenizer
    from recranker.llm.sft import (
        check_lengths,
        split_eval,
        to_prompt_completion,
        train_sft,
    )
    from recranker.progress import training_progress
    from recranker.tracking import start_run

    datasets.disable_progress_bars()  # tokenising takes seconds; keep the DVC log readable
    p = params("llm")
    launch_training("sft", p)
    records: list[dict] = []
    for ds in p.run.datasets:
        records += artifacts.train_instructions(ds, to_prompt_completion)
    train, evals = split_eval(records, p.llm.sft.eval_fraction, p.llm.sft.max_eval, p.seed)
    cfg = p.llm.sft.with_run(seed=p.seed, checkpoint_dir=str(CHECKPOINTS), deepspeed=p.llm.deepspeed)
    try:
        check_lengths(load_tokenizer(str(paths.base_model())), records, cfg.max_length)
    except RecrankerError as err:
        raise RecrankerError(f"llm.sft.{err}") from None
    with start_run("sft", p.llm.sft.model_dump(), enabled=is_main()) as run, \
            shared_output_dir(paths.llm("sft")) as tmp:
        try:
            report = train_sft(paths.base_model(), train, evals, tmp, cfg, callbacks=[training_progress("sft")])
        except ParamError as err:
            raise err.within("llm.sft") from None
        for point in report["curve"]:
            run.log({"train/loss": point["loss"]}, step=point["step"])
        metrics = {k: report[k] for k in ("final_train_loss", "eval_loss", "steps", "seconds", "tokens",
                                          "n_train", "n_eval", "train_loss_mean", "bf16")}
        metrics["launch"] = launch_info()
        run.summary(metrics)
    if not is_main():
        return
    seconds = metrics.pop("seconds")  # wall-clock: kept where no stage reads it (report reads sft.json)
    write_json(paths.METRICS / "sft.json", metrics)
    write_json(paths.timings("sft.json"), {"seconds": seconds})
    artifacts.write_curve_csv(paths.METRICS / "sft_loss.csv", report["curve"])
    typer.echo(f"sft: {metrics['steps']} steps in {seconds:.0f}s, "
               f"train loss {metrics['final_train_loss']:.3f}, eval loss {metrics['eval_loss']}")
