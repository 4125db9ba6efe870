"""The experiment recipes of both papers, as data.

A recipe is a named list of variants; each variant is a set of ``params.yaml`` overrides that
``recranker exp NAME`` turns into one ``dvc exp run -n <recipe>-<variant> -S key=value ...``.
Every recipe has a CPU form (the default profile of params.yaml plus the recipe's own keys) and a
paper-scale form (``--paper-scale``: :data:`PAPER_PROFILE` plus the recipe's paper overrides), for
GPU machines. The report (``recranker.report``) finds an experiment's results by its name, so the
names built here are the contract between ``exp`` and ``report``.

This module is pure data and string formatting: it never runs DVC and never reads params.yaml
(tests check every key and value against the params schema).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recranker.errors import RecrankerError

ALL_TASKS = ["pointwise", "pairwise", "listwise"]
DIRECT_BACKBONES = ["mf", "lightgcn", "mixgcf", "sgl"]
SEQUENTIAL_BACKBONES = ["sasrec", "bert4rec", "cl4srec"]
PAPER_DATASETS = ["ml-100k", "ml-1m", "bookcrossing"]

# RecRanker §4 / docs/gpu.md: LLaMA-2-7B, full fine-tuning, lr 2e-5 cosine, 50 warm-up steps,
# batch 4 × accumulation 2, 6000 steps, context 1024, DeepSpeed ZeRO-3; ranking with vLLM.
PAPER_PROFILE: dict[str, Any] = {
    "llm.base_model": "meta-llama/Llama-2-7b-hf",
    "llm.deepspeed": "configs/deepspeed_zero3.json",
    "llm.sft.method": "full",
    "llm.sft.lr": 0.00002,
    "llm.sft.warmup_steps": 50,
    "llm.sft.batch_size": 4,
    "llm.sft.grad_accum": 2,
    "llm.sft.max_steps": 6000,
    "llm.sft.max_length": 1024,
    "llm.sft.bf16": True,
    "llm.sft.save_steps": 500,
    "llm.dmpo.max_length": 1024,
    "llm.dmpo.lr": 0.0000005,
    "llm.dmpo.max_steps": 1000,
    "llm.pref_eval.max_length": 1024,
    "llm.pref_eval.max_samples": 1000,
    "rank.backend": "vllm",
    "rank.dtype": "bfloat16",
}


@dataclass(frozen=True)
class Variant:
    """One experiment: ``name`` (unique in its recipe), ``label`` for tables/plots, overrides."""

    name: str
    label: str
    set: Mapping[str, Any] = field(default_factory=dict)
    paper_set: Mapping[str, Any] | None = None  # replaces ``set`` at paper scale (None: same)
    x: float | None = None  # position on a sweep plot's x axis
    series: str = ""  # sweeps with several lines (e.g. with / without SFT)


@dataclass(frozen=True)
class Recipe:
    """A table or figure of a paper and the experiments that reproduce it."""

    name: str
    paper: str  # e.g. "RecRanker Table V"
    kind: str  # how the report shows it: main | ablation | sweep | dmpo-auc | dmpo-sweep | cross-domain
    description: str
    variants: tuple[Variant, ...]
    common: Mapping[str, Any] = field(default_factory=dict)  # every variant, CPU and paper scale
    paper_common: Mapping[str, Any] = field(default_factory=dict)  # paper scale, on top of the profile
    targets: tuple[str, ...] = ()  # dvc exp run targets (empty: the whole pipeline)
    cpu_cost: str = ""
    gpu_only: bool = False  # no CPU form: only --paper-scale runs it
    x_label: str = ""  # sweeps: the axis label
    notes: str = ""

    def overrides(self, variant: Variant, paper_scale: bool = False) -> dict[str, Any]:
        """Every ``key → value`` this variant sets, in application order (later wins)."""
        if self.gpu_only and not paper_scale:
            raise RecrankerError(f"recipe '{self.name}' is GPU-only: run it with --paper-scale on a GPU machine")
        out: dict[str, Any] = {}
        if paper_scale:
            out.update(PAPER_PROFILE)
        out.update(self.common)
        if paper_scale:
            out.update(self.paper_common)
        out.update(variant.paper_set if paper_scale and variant.paper_set is not None else variant.set)
        return out

    def exp_name(self, variant: Variant, paper_scale: bool = False) -> str:
        return experiment_name(self.name, variant.name, paper_scale)


def experiment_name(recipe: str, variant: str, paper_scale: bool = False) -> str:
    """The DVC experiment name of a variant (a valid git ref component)."""
    return f"{recipe}-{variant}" + ("-paper" if paper_scale else "")


def format_value(value: Any) -> str:
    """A Python value as DVC's ``-S`` (Hydra override) syntax: ``true``, ``null``, ``[a,b]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:  # Hydra reads 2e-05 as a float; keep the plain decimal form
            text = f"{value:.12f}".rstrip("0")
            if text.endswith("."):
                text += "0"
        return text
    return str(value)


def set_args(overrides: Mapping[str, Any]) -> list[str]:
    """``["-S", "key=value", ...]`` for ``dvc exp run``."""
    out: list[str] = []
    for key, value in overrides.items():
        out += ["-S", f"{key}={format_value(value)}"]
    return out


def exp_run_args(recipe: Recipe, variant: Variant, *, paper_scale: bool = False, queue: bool = False,
                 temp: bool = True) -> list[str]:
    """The argv (after ``dvc``) that runs one variant."""
    argv = ["exp", "run", "-n", recipe.exp_name(variant, paper_scale)]
    if queue:
        argv.append("--queue")
    elif temp:
        argv.append("--temp")  # leaves params.yaml untouched: no override leaks into the next variant
    argv += set_args(recipe.overrides(variant, paper_scale))
    argv += list(recipe.targets)
    return argv


def _sweep(prefix: str, key: str, values: list[float], fmt: str) -> tuple[Variant, ...]:
    return tuple(Variant(f"{prefix}{str(v).replace('.', 'p')}", fmt.format(v), {key: v}, x=float(v)) for v in values)


_RANK_ALL = {"rank.tasks": ALL_TASKS}
# CPU costs: 2 cores, measured on the default profile (README, "Stage times"): sft 7 min,
# rank 19 min per backbone (943 users, three tasks), dmpo 9 min, pref-eval 3 min.
_EVAL_COST = ("first variant: what of the pipeline is not already cached (nothing after a default "
              "`dvc repro` with all three tasks); every variant re-runs only `evaluate`: ~30 s each "
              "including the temporary-copy overhead of `dvc exp run --temp` (measured)")
_PIPE_COST = "~27 min per variant (measured stages: sft 7 min + rank 19 min per backbone)"
ABLATION_COST = ("estimate ~12 min per variant on 2 cores (sft ~7 min, rank of 200 users with both pair "
                 "orders ~5 min; the `full` variant reuses the default SFT) → ~45 min for the four")
_DMPO_COST = ("estimate ~65 min per variant on a quiet 2-core CPU with ~540-token pairwise prompts "
              "(dmpo-sft ~10, dmpo ~30 for 100 samples x 3 pairs, pref-eval ~27 for 1,000 pairs x 3 models; "
              "README, DMPO)")

RECIPES: tuple[Recipe, ...] = (
    Recipe(
        name="rr-table3",
        paper="RecRanker Table III",
        kind="main",
        description="Direct recommendation: every dataset × backbone (MF, LightGCN, MixGCF, SGL), the "
                    "backbone's order vs the pointwise / pairwise / listwise re-rankings and the hybrid, "
                    "with the improvement rows.",
        variants=(Variant("all", "RecRanker", {"run.backbones": DIRECT_BACKBONES}),),
        common={**_RANK_ALL, "run.datasets": ["ml-100k"]},
        paper_common={"run.datasets": PAPER_DATASETS},
        cpu_cost="ML-100K only: backbones a few minutes each (MF 7 s, LightGCN ~3 min), then rank 19 min "
                 "per backbone → ~1.5 h for four backbones",
    ),
    Recipe(
        name="rr-table4",
        paper="RecRanker Table IV",
        kind="main",
        description="Sequential recommendation: every dataset × backbone (SASRec, BERT4Rec, CL4SRec), base vs "
                    "pointwise / pairwise / listwise / hybrid.",
        variants=(Variant("all", "RecRanker", {"run.backbones": SEQUENTIAL_BACKBONES}),),
        common={**_RANK_ALL, "run.datasets": ["ml-100k"]},
        paper_common={"run.datasets": PAPER_DATASETS},
        cpu_cost="ML-100K only: the three sequential backbones train for up to ~20 min each (SASRec: "
                 "63 epochs), then rank 19 min per backbone → ~2 h",
    ),
    Recipe(
        name="rr-ablation",
        paper="RecRanker Table V",
        kind="ablation",
        description="Ablation of the instruction construction: without adaptive user sampling (uniform), "
                    "without position shifting (candidates in backbone order in training prompts), without "
                    "prompt enhancement (no backbone / rating hints).",
        variants=(
            Variant("full", "RecRanker"),
            Variant("no-aus", "w/o adaptive user sampling", {"sampling.mode": "uniform"}),
            Variant("no-ps", "w/o position shifting", {"instruct.shuffle_candidates": False,
                                                       "instruct.shuffle_history": False}),
            Variant("no-pe", "w/o prompt enhancement", {"instruct.enhance": False}),
        ),
        # both orders of every test pair: the report's position-consistency table compares variants.
        # On the CPU a seeded 200 of the 943 test users (the same in every variant) keep the four
        # sft + rank runs near an hour; the paper scale evaluates everyone.
        common={**_RANK_ALL, "instruct.pairwise_both_orders": True, "instruct.max_test_users": 200},
        paper_common={"run.datasets": PAPER_DATASETS, "instruct.max_test_users": 0},
        targets=("evaluate",),  # the RecRanker branch: a new SFT must not re-run dmpo and pref-eval
        cpu_cost=ABLATION_COST,
    ),
    Recipe(
        name="rr-c1",
        paper="RecRanker Figure 3 (C1)",
        kind="sweep",
        description="Hybrid ranking: sweep C1, the pointwise position penalty (U_point = s − m·C1). Only "
                    "`evaluate` re-runs after the first variant.",
        variants=_sweep("c1-", "evaluate.hybrid.c1", [0.0, 0.025, 0.05, 0.1, 0.2], "C1 = {}"),
        common=_RANK_ALL,
        targets=("evaluate",),
        cpu_cost=_EVAL_COST,
        x_label="C1",
    ),
    Recipe(
        name="rr-c2",
        paper="RecRanker Figure 3 (C2)",
        kind="sweep",
        description="Hybrid ranking: sweep C2, the weight of a pairwise win (U_pair = wins·C2).",
        variants=_sweep("c2-", "evaluate.hybrid.c2", [0.1, 0.25, 0.5, 1.0, 2.0], "C2 = {}"),
        common=_RANK_ALL,
        targets=("evaluate",),
        cpu_cost=_EVAL_COST,
        x_label="C2",
    ),
    Recipe(
        name="rr-c3",
        paper="RecRanker Figure 3 (C3)",
        kind="sweep",
        description="Hybrid ranking: sweep C3, the listwise position penalty (U_list = −m'·C3).",
        variants=_sweep("c3-", "evaluate.hybrid.c3", [0.0, 0.0125, 0.025, 0.05, 0.1], "C3 = {}"),
        common=_RANK_ALL,
        targets=("evaluate",),
        cpu_cost=_EVAL_COST,
        x_label="C3",
    ),
    Recipe(
        name="rr-data-scaling",
        paper="RecRanker Table VI",
        kind="sweep",
        description="Data scaling: 10% / 50% / 100% of the instructions (sampling.n_users) with "
                    "proportional training steps (llm.sft.max_steps).",
        variants=(
            Variant("10pct", "10%", {"sampling.n_users": 20, "llm.sft.max_steps": 3},
                    {"sampling.n_users": 600, "llm.sft.max_steps": 600}, x=10.0),
            Variant("50pct", "50%", {"sampling.n_users": 100, "llm.sft.max_steps": 15},
                    {"sampling.n_users": 3000, "llm.sft.max_steps": 3000}, x=50.0),
            Variant("100pct", "100%", {"sampling.n_users": 200, "llm.sft.max_steps": 30},
                    {"sampling.n_users": 6000, "llm.sft.max_steps": 6000}, x=100.0),
        ),
        common=_RANK_ALL,
        paper_common={"run.datasets": PAPER_DATASETS},
        targets=("evaluate",),
        cpu_cost=_PIPE_COST + " (SFT shrinks with the fraction; rank does not) → ~1.3 h",
        x_label="% of instructions",
    ),
    Recipe(
        name="rr-model-scaling",
        paper="RecRanker Figure 4",
        kind="sweep",
        description="Model scaling: the same pipeline with different base LLMs (llm.base_model: a local "
                    "directory or a Hugging Face id). On CPU only the two offline models run: a randomly "
                    "initialised tiny model (lower bound) and the default SmolLM2-135M; the paper-scale "
                    "form swaps in hub models up to 13B (GPU, hub access or local copies).",
        variants=(
            Variant("tiny", "tiny-random", {"llm.base_model": "tiny-random"},
                    {"llm.base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}, x=0.0),
            Variant("135m", "SmolLM2-135M", {"llm.base_model": "smollm2-135m-instruct-gguf"},
                    {"llm.base_model": "HuggingFaceTB/SmolLM2-1.7B-Instruct"}, x=1.0),
            Variant("7b", "LLaMA-2-7B", {"llm.base_model": "meta-llama/Llama-2-7b-hf"},
                    {"llm.base_model": "meta-llama/Llama-2-7b-hf"}, x=2.0),
            Variant("13b", "LLaMA-2-13B", {"llm.base_model": "meta-llama/Llama-2-13b-hf"},
                    {"llm.base_model": "meta-llama/Llama-2-13b-hf"}, x=3.0),
        ),
        common=_RANK_ALL,
        targets=("evaluate",),
        cpu_cost="CPU: run only the first two variants (`--variant tiny --variant 135m`), ~30 min each; "
                 "the 7B/13B variants need a GPU (and the weights on disk or hub access)",
        x_label="base model",
        notes="Without --paper-scale the 7b/13b variants use LoRA on CPU and are impractical; select "
              "variants with --variant.",
    ),
    Recipe(
        name="rr-paper",
        paper="RecRanker Tables III-IV at paper scale",
        kind="main",
        description="The paper's setting: LLaMA-2-7B (or any HF id via llm.base_model), full fine-tuning, "
                    "DeepSpeed ZeRO-3, vLLM ranking, every dataset × all seven backbones, all tasks.",
        variants=(Variant("all", "RecRanker (paper scale)",
                          {"run.backbones": DIRECT_BACKBONES + SEQUENTIAL_BACKBONES}),),
        common={**_RANK_ALL, "run.datasets": PAPER_DATASETS},
        gpu_only=True,
        cpu_cost="GPU-only (not run here): 8 GPUs per docs/gpu.md",
    ),
    Recipe(
        name="dmpo-table2",
        paper="DMPO Table 2",
        kind="dmpo-auc",
        description="Preference AUC on the same test pairs: the untuned base LLM, SFT only (TALLRec-style "
                    "SFT on the DMPO samples, dmpo-sft), SFT + DMPO (pref-eval), and the sequential backbones SASRec, "
                    "BERT4Rec, CL4SRec (pref-backbone: each trained without the test users' interactions "
                    "from their preference positive on, then scoring the candidates after the sample's "
                    "history; metrics/pref_backbone/<ds>.json).",
        variants=(Variant("main", "SFT vs SFT+DMPO vs backbones",
                          {"llm.pref_eval.models": ["base", "sft", "dmpo"],
                           "llm.pref_eval.backbones": SEQUENTIAL_BACKBONES}),),
        targets=("pref-eval", "pref-backbone"),
        cpu_cost=_DMPO_COST
                 + "; pref-backbone runs beside it: three sequential backbone trainings on ML-100K "
                 "(tens of minutes each, as in rr-table4)",
    ),
    Recipe(
        name="dmpo-k",
        paper="DMPO Figure 3",
        kind="dmpo-sweep",
        description="Number of negatives k = 1, 3, 5 in the DMPO loss (k pairwise prompts per sample; the "
                    "samples are built with 5 negatives and the first k used; k = 1 is plain DPO).",
        variants=tuple(Variant(f"k{k}", f"k = {k}", {"llm.dmpo.k": k}, x=float(k)) for k in (1, 3, 5)),
        common={"preferences.k_negatives": 5},
        targets=("pref-eval",),
        cpu_cost=_DMPO_COST + " → three variants",
        x_label="negatives k",
    ),
    Recipe(
        name="dmpo-fewshot",
        paper="DMPO Figure 4",
        kind="dmpo-sweep",
        description="Few-shot: 20..200 DMPO training samples (preferences.n_train), after SFT and without "
                    "SFT. 'Without SFT' = llm.dmpo.init=base: policy and reference start as the base model "
                    "with a fresh LoRA adapter.",
        variants=tuple(
            Variant(f"n{n}-{tag}", f"n = {n} ({'with' if sft else 'without'} SFT)",
                    {"preferences.n_train": n, **({} if sft else {"llm.dmpo.init": "base"})},
                    x=float(n), series="with SFT" if sft else "without SFT")
            for sft, tag in ((True, "sft"), (False, "nosft")) for n in (20, 50, 100, 200)
        ),
        targets=("pref-eval",),
        cpu_cost=_DMPO_COST + " → eight variants (dmpo-sft re-runs too: it trains on the same samples)",
        x_label="training samples",
    ),
    Recipe(
        name="dmpo-cross",
        paper="DMPO Table 3",
        kind="cross-domain",
        description="Cross-domain: DMPO trained on one dataset (llm.dmpo.datasets), AUC on each dataset "
                    "(llm.pref_eval.datasets); in- vs cross-domain is labelled by pref-eval.",
        variants=(
            Variant("from-ml-100k", "trained on ML-100K", {"llm.dmpo.datasets": ["ml-100k"]}),
            Variant("from-ml-1m", "trained on ML-1M", {"llm.dmpo.datasets": ["ml-1m"]}),
        ),
        common={"run.datasets": ["ml-100k", "ml-1m"], "llm.pref_eval.datasets": ["ml-100k", "ml-1m"]},
        paper_common={"run.datasets": PAPER_DATASETS, "llm.pref_eval.datasets": PAPER_DATASETS},
        targets=("pref-eval",),
        cpu_cost="needs a second dataset (ML-1M ratings.dat is not available offline here); the SFT branch "
                 "then runs on both datasets (~25 min) plus " + _DMPO_COST,
    ),
)

_BY_NAME = {r.name: r for r in RECIPES}


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; unknown names fail listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise RecrankerError(f"unknown recipe '{name}' (known: {', '.join(_BY_NAME)})") from None


def select(r: Recipe, names: list[str] | None) -> list[Variant]:
    """The variants named in ``names`` (all when empty), in recipe order."""
    if not names:
        return list(r.variants)
    known = {v.name for v in r.variants}
    bad = [n for n in names if n not in known]
    if bad:
        raise RecrankerError(f"recipe '{r.name}': unknown variant '{bad[0]}' (known: {', '.join(known)})")
    return [v for v in r.variants if v.name in names]


def lookup(exp_name: str) -> tuple[Recipe, Variant, bool] | None:
    """(recipe, variant, paper_scale) of a DVC experiment name built by :func:`experiment_name`."""
    for r in RECIPES:
        for v in r.variants:
            for paper in (False, True):
                if experiment_name(r.name, v.name, paper) == exp_name:
                    return r, v, paper
    return None


def markdown(r: Recipe) -> str:
    """The recipe's section of docs/experiments.md (kept in sync by a test)."""
    cmd = f"recranker exp {r.name}" + (" --paper-scale" if r.gpu_only else "")
    title = f"### `{r.name}` — {r.paper}" + (" (GPU-only)" if r.gpu_only else "")
    lines = [title, "", r.description, "", "```bash", cmd, "```", "",
             "| variant | label | sets (CPU) | sets (paper scale, on top of the profile) |", "|---|---|---|---|"]

    def sets(v: Variant, paper: bool) -> str:
        if r.gpu_only and not paper:
            return "—"
        if paper:  # what the recipe adds to the paper profile
            over = {**r.common, **r.paper_common, **(v.paper_set if v.paper_set is not None else v.set)}
        else:
            over = r.overrides(v)
        return " ".join(f"`{k}={format_value(val)}`" for k, val in over.items()) or "—"

    lines += [f"| {v.name} | {v.label} | {sets(v, False)} | {sets(v, True)} |" for v in r.variants]
    if r.targets:
        targets = " ".join(f"`{t}`" for t in r.targets)
        lines += ["", f"DVC targets: {targets} (only these stages and what they depend on run)."]
    lines += ["", f"CPU cost: {r.cpu_cost}" + ("" if r.cpu_cost.endswith(".") else ".")]
    if r.notes:
        lines += ["", r.notes]
    return "\n".join(lines) + "\n"
