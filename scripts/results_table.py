"""The README's RecRanker results table from metrics/evaluate/<ds>/<bb>.json (what `dvc repro` wrote).

    .venv/bin/python scripts/results_table.py [--dataset ml-100k] [--backbone mf]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("HR@3", "NDCG@3", "HR@5", "NDCG@5")
LABELS = {"backbone": "base", "pointwise": "+ pointwise", "pairwise": "+ pairwise", "listwise": "+ listwise",
          "hybrid": "+ hybrid"}


def pct(x) -> str:
    return "n/a" if x is None else f"{x:+.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--backbone", default="mf")
    a = ap.parse_args()
    m = json.loads(Path(f"metrics/evaluate/{a.dataset}/{a.backbone}.json").read_text())
    print("| method | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for method, label in LABELS.items():
        if method not in m:
            continue
        cells = []
        for k in METRICS:
            v = f"{m[method][k]:.4f}".lstrip("0")
            b = m.get("bootstrap", {}).get(method, {}).get(k)
            if b:
                ci = b["improvement_ci95_%"]
                v += f" ({pct(b['improvement_%'])}, [{pct(ci[0])}, {pct(ci[1])}])" if ci else f" ({pct(b['improvement_%'])})"
            cells.append(v)
        print(f"| {label} | " + " | ".join(cells) + " |")
    hw = m.get("hybrid_weights", {})
    w = hw.get("weights", {})
    print(f"\nhybrid weights ({hw.get('chosen_on')}): " + ", ".join((f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v}") for k, v in w.items()))
    sel = hw.get("selection")
    if sel:
        print(f"validation objective (mean of HR/NDCG@3,5 over {sel['valid_users']} users): chosen "
              f"{sel['valid_objective']:.4f}, paper weights {sel['valid_objective_paper_weights']:.4f}, "
              f"backbone order {sel['valid_objective_backbone']:.4f}")
    print(f"candidate recall@{m['counts']['k_prime']}: {m.get('candidate_recall@' + str(m['counts']['k_prime'])):.4f}; "
          f"pairwise position consistency: {m.get('pairwise_consistency')}")


if __name__ == "__main__":
    main()
