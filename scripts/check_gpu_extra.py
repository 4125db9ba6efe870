"""Does ``pip install -e '.[gpu]'`` resolve with the project's pinned torch? (`make check-gpu-extra`)

A dry run (``pip install --dry-run --ignore-installed --report``) in a throw-away virtual
environment whose pip is recent enough to resolve from wheel metadata alone: vLLM's wheels carry
no separate metadata file on the index, so an old pip (23.x, what ``python -m venv`` ships with
Python 3.11) downloads every wheel it considers — about 1.7 GB of CUDA wheels, 8 minutes here —
while pip >= 25 with ``--use-feature=fast-deps`` reads each wheel's METADATA with HTTP range
requests and downloads none (2.5 minutes here, on a loaded 2-core machine). Nothing is installed.

Then it checks the resolution: torch at the project's pin (a local ``+cpu`` build counts: same
release), vllm and deepspeed at the extra's pins. One line per fact, exit 1 on any mismatch.

    python scripts/check_gpu_extra.py [--report out.json] [--keep-venv DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_PIP = "pip>=25.1"  # resolves from range-read wheel metadata without downloading (fast-deps)


def pins(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """{name: version} of the exact pins of the project's dependencies and of its `gpu` extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    out = {}
    for spec in [*project["dependencies"], *project["optional-dependencies"]["gpu"]]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", spec)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def resolved_versions(report: dict) -> dict[str, str]:
    """{name: version} of what a ``pip install --report`` would install."""
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
            for item in report.get("install", [])}


def check(report: dict, expected: dict[str, str], names=("torch", "vllm", "deepspeed")) -> list[str]:
    """Problems with the resolution (empty: it matches the pins). A local version label
    (``2.13.0+cpu``) is the same release as its pin."""
    got = resolved_versions(report)
    problems = []
    for name in names:
        want, have = expected.get(name), got.get(name)
        if want is None:
            problems.append(f"{name}: not pinned in pyproject.toml")
        elif have is None:
            problems.append(f"{name}: not in the resolution")
        elif have.split("+", 1)[0] != want:
            problems.append(f"{name}: resolved {have}, pinned {want}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, help="also write pip's resolution report here (JSON)")
    ap.add_argument("--keep-venv", type=Path, help="make (or reuse) the resolver's venv here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpu-extra-") as tmp:
        env_dir = args.keep_venv or Path(tmp) / "venv"
        pip = env_dir / "bin" / "pip"
        if not pip.exists():
            venv.create(env_dir, with_pip=True)
        subprocess.run([str(pip), "install", "-q", "-U", MIN_PIP], check=True)
        report_path = Path(tmp) / "report.json"
        cmd = [str(pip), "install", "--dry-run", "--ignore-installed", "--use-feature=fast-deps",
               "--report", str(report_path), "-e", f"{ROOT}[gpu]"]
        print("$", " ".join(cmd[1:]), flush=True)
        run = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            tail = [line for line in (run.stdout + run.stderr).splitlines() if "is ignored" not in line]
            print("\n".join(tail[-25:]), file=sys.stderr)
            print(f"error: `pip install -e '.[gpu]'` does not resolve (pip exit {run.returncode})", file=sys.stderr)
            return 1
        report = json.loads(report_path.read_text(encoding="utf-8"))
        if args.report:
            args.report.write_text(json.dumps(report, indent=1), encoding="utf-8")
    expected = pins()
    got = resolved_versions(report)
    problems = check(report, expected)
    for name in ("torch", "vllm", "deepspeed", "transformers", "fastapi"):
        print(f"{name}: {got.get(name, '-')} (pinned {expected.get(name, '-')})")
    print(f"{len(got)} distributions would be installed (only metadata and sdists were downloaded)")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
