"""Rewrite the recipe sections of docs/experiments.md from the recipe files (src/recranker/recipes/).

Each recipe's generated block (heading to its "CPU cost" line, plus its notes) is replaced in
place; hand-written paragraphs after a block are kept. `tests/test_experiments.py` fails when
the docs and the catalogue disagree.

    .venv/bin/python scripts/experiments_doc.py
"""

from __future__ import annotations

import re
from pathlib import Path

from recranker import experiments as ex

DOC = Path(__file__).resolve().parents[1] / "docs" / "experiments.md"


def main() -> None:
    text = DOC.read_text()
    for r in ex.RECIPES:
        block = ex.markdown(r)
        m = re.search(rf"^### `{re.escape(r.name)}` .*?^CPU cost: [^\n]*\n", text, re.DOTALL | re.MULTILINE)
        if m is None:
            raise SystemExit(f"{DOC}: no section for recipe {r.name}; add its heading under ## Recipes")
        end = m.end()
        if r.notes and text[end:].startswith("\n" + r.notes):
            end += len(r.notes) + 2
        text = text[: m.start()] + block + text[end:]
    DOC.write_text(text)
    print(f"rewrote {len(ex.RECIPES)} recipe sections in {DOC}")


if __name__ == "__main__":
    main()
