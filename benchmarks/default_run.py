"""The default run, measured: every stage of `dvc repro` timed, with its peak memory and dtype.

Runs `dvc repro -s STAGE` for each stage of the project's graph in dependency order (each
stage alone, so its time and memory are its own; DVC's own checks are part of each stage's time,
as in a plain `dvc repro`), polling the stage's whole process tree (rank's worker processes
included) for its resident memory. Records the CPU (model name, torch's capability, whether bf16
is native), a one-thread matmul timing in fp32 and bf16 in the environment the stages run in, and
the dtype each LLM stage reports in its metrics. Prints a markdown table and writes JSON.

    python benchmarks/default_run.py [--project .] [--force] [--imitate-avx2]
        [--stages prepare@ml-100k,backbone@ml-100k-mf] [--out benchmarks/results/default_run.json]

--imitate-avx2 runs every stage with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: torch's own
kernels and oneDNN's (the matmuls) are limited to AVX2, as on a laptop CPU, and `auto` picks fp32
as it would there (``recranker.llm.precision`` honours the oneDNN cap). The matmul timing in the
JSON shows that it took effect (bf16 is then emulated, far slower than fp32). What it cannot
imitate: the clock, caches and memory bandwidth of another machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
DTYPE_KEYS = ("dtype", "bf16")  # what the LLM stages write into their metrics about precision

# Run in a child with the stages' environment: what this process imports says nothing about it.
PROBE = r"""
import json, time, torch
from recranker.llm.precision import cpu_capability, cpu_has_native_bf16, resolve
torch.set_num_threads(1)
def gflops(dtype, m=64, k=576, n=1536, reps=20):  # a 135M-model layer's matmul, one user's suffix batch
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    with torch.no_grad():
        a @ b
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9
print(json.dumps({"torch_capability": torch.backends.cpu.get_cpu_capability(),
                  "cpu_capability": cpu_capability(), "native_bf16": cpu_has_native_bf16(),
                  "auto_dtype": resolve("auto", "cpu"), "torch": torch.__version__,
                  "matmul_gflops_1thread": {"float32": round(gflops(torch.float32), 1),
                                            "bfloat16": round(gflops(torch.bfloat16), 1)}}))
"""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe(python: str, env: dict) -> dict:
    """torch's CPU capability, the bf16 decision and the fp32/bf16 matmul rate under ``env``."""
    out = subprocess.run([python, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def stages_in_order(project: Path) -> list[tuple[str, list[Path]]]:
    """(address, metrics files) of every dvc.yaml stage, each after the stages it depends on."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        graph = repo.index.graph  # edges run from a stage to the stages it depends on
        order = list(reversed(list(nx.topological_sort(graph))))
        out = []
        for stage in order:
            if not getattr(stage, "cmd", None):  # .dvc files: nothing to run
                continue
            metrics = [Path(str(o.fs_path)) for o in stage.outs if o.metric and str(o.fs_path).endswith(".json")]
            out.append((stage.name, metrics))  # its dvc.yaml name (addressing adds a path outside the cwd)
    return out


def precision_of(metrics_files: list[Path]) -> dict:
    """``dtype`` / ``bf16`` values a stage wrote into its metrics (nested one level at most)."""
    found = {}
    for f in metrics_files:
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        items = list(data.items()) if isinstance(data, dict) else []
        items += [(f"{k}.{k2}", v2) for k, v in items if isinstance(v, dict) for k2, v2 in v.items()]
        for k, v in items:
            if k.rsplit(".", 1)[-1] in DTYPE_KEYS and isinstance(v, (str, bool)):
                found[f"{f.name}:{k}"] = v
    return found


def run_stage(dvc: str, address: str, project: Path, env: dict, force: bool, poll_s: float = 0.2) -> dict:
    """Run one stage, polling its process tree: wall seconds, peak RSS summed over the tree and of
    its largest process (MB), exit code and the tail of its output."""
    import psutil

    cmd = [dvc, "repro", "--single-item", *(["--force"] if force else []), address]
    log = project / ".default_run.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=fh, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        peak_tree = peak_one = 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            rss = []
            for p in tree:
                try:
                    rss.append(p.memory_info().rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss, default=0))
            time.sleep(poll_s)
        rc = proc.wait()
    secs = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    log.unlink()
    return {"stage": address, "seconds": round(secs, 1), "peak_rss_tree_mb": round(peak_tree / 2**20),
            "peak_rss_process_mb": round(peak_one / 2**20), "returncode": rc,
            "skipped": "didn't change, skipping" in text, "output_tail": text[-2000:]}


def markdown(result: dict) -> str:
    rows = ["| stage | time | peak RSS (tree / largest process) | dtype | notes |", "|---|---|---|---|---|"]
    for s in result["stages"]:
        dtype = ", ".join(f"{k.split(':', 1)[1]}={v}" for k, v in s["precision"].items()) or ""
        note = "unchanged, skipped" if s["skipped"] else ("FAILED" if s["returncode"] else "")
        rows.append(f"| {s['stage']} | {s['seconds'] / 60:.1f} min ({s['seconds']:.0f} s) | "
                    f"{s['peak_rss_tree_mb'] / 1024:.1f} / {s['peak_rss_process_mb'] / 1024:.1f} GB | {dtype} | {note} |")
    rows.append(f"| **total** | **{result['total_seconds'] / 60:.1f} min** | | | |")
    cpu = result["cpu"]
    head = (f"{cpu['model']}, {cpu['cores']} cores; torch capability {cpu['torch_capability']}"
            f"{' (imitated: ' + ' '.join(f'{k}={v}' for k, v in AVX2_ENV.items()) + ')' if result['imitate_avx2'] else ''}"
            f"; `auto` → {cpu['auto_dtype']}; 1-thread matmul fp32 {cpu['matmul_gflops_1thread']['float32']} / "
            f"bf16 {cpu['matmul_gflops_1thread']['bfloat16']} GFLOP/s")
    return head + "\n\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, default=ROOT, help="the project directory to run `dvc repro` in")
    ap.add_argument("--force", action="store_true", help="run every stage even if unchanged (dvc repro --force)")
    ap.add_argument("--imitate-avx2", action="store_true", help="limit torch and oneDNN to AVX2 (see module doc)")
    ap.add_argument("--stages", default="", help="comma-separated stage addresses (default: all, in graph order)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/"
                    "default_run[_avx2].json in this repository)")
    args = ap.parse_args(argv)
    project = args.project.resolve()
    env = {**os.environ, **(AVX2_ENV if args.imitate_avx2 else {})}
    venv = project / ".venv" / "bin"
    python = str(venv / "python") if (venv / "python").exists() else sys.executable
    dvc = str(venv / "dvc") if (venv / "dvc").exists() else "dvc"

    cpu = {"model": cpu_model(), "cores": os.cpu_count(), "machine": platform.machine(), **probe(python, env)}
    plan = stages_in_order(project)
    if args.stages:
        wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
        known = {a for a, _ in plan}
        unknown = [s for s in wanted if s not in known]
        if unknown:
            ap.error(f"--stages: unknown stage(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        plan = [(a, m) for a, m in plan if a in wanted]

    stages, t0 = [], time.perf_counter()
    for address, metrics in plan:
        print(f"[default_run] {address} ...", file=sys.stderr, flush=True)
        s = run_stage(dvc, address, project, env, args.force)
        s["precision"] = precision_of([project / m for m in metrics])
        stages.append(s)
        print(f"[default_run] {address}: {s['seconds']:.0f} s, peak {s['peak_rss_tree_mb']} MB, rc {s['returncode']}",
              file=sys.stderr, flush=True)
        if s["returncode"]:
            print(s["output_tail"], file=sys.stderr)
            break
    result = {
        "command": "python benchmarks/default_run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "project": str(project), "force": args.force, "imitate_avx2": args.imitate_avx2,
        "env": {k: env[k] for k in (*AVX2_ENV, "HF_HUB_OFFLINE", "WANDB_MODE") if k in env},
        "cpu": cpu, "stages": stages, "total_seconds": round(time.perf_counter() - t0, 1),
        "complete": bool(stages) and len(stages) == len(plan) and not stages[-1]["returncode"],
    }
    out = args.out or ROOT / "benchmarks/results" / f"default_run{'_avx2' if args.imitate_avx2 else ''}.json"
    from recranker.io import write_json

    write_json(out, result)
    print(markdown(result))
    print(f"\nwrote {out}", file=sys.stderr)
    if not result["complete"]:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
