"""Code is a dependency: every dvc.yaml stage lists the code it runs, and nothing else.

A stage's code is its module `stages/<stage>.py` and everything that module imports, transitively
within the project (lazy imports inside functions included), read with `ast`. Files are grouped
into the units dvc.yaml lists: a stage-side file, `stages/params/`, a module directly under
`src/recranker/` or `src/recranker/llm/` (namespaces of separate concepts), or a whole library
subpackage (`src/recranker/<pkg>/`, which may import its own modules dynamically) - except the
few library files the params schema imports (e.g. `backbones/config.py`), which every stage
loads and which count as single files. The CLI
registry (`stages/__init__.py`, `stages/__main__.py`) is plumbing, not a stage's behaviour.

`python tests/test_code_deps.py --write` rewrites the code deps of every dvc.yaml stage (comments
and other deps stay); without --write it prints them.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PLUMBING = {"stages/__init__.py", "stages/__main__.py"}
# Data a module reads at import time, as much a part of the code as the module itself.
PACKAGE_DATA = {"src/recranker/experiments.py": "src/recranker/recipes"}
NAMESPACES = {"src/recranker", "src/recranker/llm"}


def module_file(name: str) -> Path | None:
    """The project file of module NAME (recranker.* or stages.*), None for third-party modules."""
    top = name.split(".")[0]
    if top not in {"recranker", "stages"}:
        return None
    base = (SRC if top == "recranker" else ROOT) / Path(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC if path.is_relative_to(SRC) else ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def direct_imports(path: Path) -> frozenset[Path]:
    """Project files PATH imports (anywhere in the file), plus the packages they live in."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    files: set[Path] = set()
    for mod in found:
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            f = module_file(".".join(parts[:i]))
            if f is not None:
                files.add(f)
    return frozenset(files)


def closure(start: Path) -> set[Path]:
    seen, todo = set(), [start]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(direct_imports(f) - seen)
    return seen


def unit(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("stages/params/"):
        return "stages/params"
    parent = path.parent.relative_to(ROOT).as_posix()
    if rel.startswith("stages/") or parent in NAMESPACES:
        return rel
    while parent.rpartition("/")[0] not in NAMESPACES:  # the subpackage just below a namespace
        parent = parent.rpartition("/")[0]
    return parent


def stage_modules() -> dict[str, str]:
    """recranker sub-command → its stage module (the table the CLI registers)."""
    tree = ast.parse((ROOT / "stages/__init__.py").read_text(encoding="utf-8"))
    table = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, "id", "") == "_STAGE_TABLE" for t in n.targets))
    return {cmd: module for cmd, module, _ in ast.literal_eval(table)}


def code_units(module: str) -> set[str]:
    files = {f.relative_to(ROOT).as_posix(): f for f in closure(module_file(module))}
    schema = schema_files()
    units = set()
    for rel, f in files.items():
        if rel in PLUMBING:
            continue
        u = unit(f)
        # the params schema (loaded by every stage) imports a few light library files, e.g. a
        # package's config.py: those count as files, or every stage would depend on the package
        units.add(rel if f in schema and not u.endswith(".py") and u != "stages/params" else u)
    units = {u for u in units if not any(u.startswith(d + "/") for d in units if not d.endswith(".py"))}
    return units | {data for rel, data in PACKAGE_DATA.items() if rel in files}


@cache
def schema_files() -> frozenset[Path]:
    return frozenset(closure(ROOT / "stages/params/__init__.py"))


def dvc_stages() -> dict[str, tuple[str, set[str]]]:
    """dvc.yaml stage → (its recranker sub-command, its code deps)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = {}
    for name, st in spec["stages"].items():
        st = st.get("do", st)  # a foreach stage: its template
        words = st["cmd"].split()
        assert words[0] == "./bin/recranker", f"{name}: cmd must call ./bin/recranker, not {words[0]}"
        deps = {d for d in st.get("deps", []) if d.startswith(("stages/", "src/"))}
        out[name] = (words[1], deps)
    return out


def test_every_stage_depends_on_exactly_the_code_it_imports():
    modules = stage_modules()
    problems = []
    for name, (cmd, deps) in dvc_stages().items():
        need = code_units(modules[cmd])
        if need - deps:
            problems.append(f"{name}: dvc.yaml misses {sorted(need - deps)}")
        if deps - need:
            problems.append(f"{name}: dvc.yaml lists code it does not import {sorted(deps - need)}")
    assert not problems, "\n".join(problems)


def test_code_deps_exist():
    for name, (_, deps) in dvc_stages().items():
        for d in deps:
            assert (ROOT / d).exists(), f"{name}: {d} does not exist"


def test_the_analysis_sees_lazy_and_relative_imports():
    rank = code_units("stages.rank")
    assert "src/recranker/llm/backends" in rank  # imported inside the command function
    assert "src/recranker/ranking" in rank and "src/recranker/prompts" in rank  # via ranking/__init__
    assert "stages/params" in rank and "stages/artifacts.py" in rank
    assert "src/recranker/llm/dmpo.py" not in rank and "stages/sft.py" not in rank


def rewrite_dvc_yaml() -> None:
    """Replace each stage's code deps in dvc.yaml (text edit: comments and layout survive)."""
    import re

    modules, lines, out, stage = stage_modules(), (ROOT / "dvc.yaml").read_text().splitlines(True), [], None
    cmds = {}
    for ln in lines:
        if m := re.match(r"^  ([a-z-]+):\s*$", ln):
            stage = m.group(1)
        elif m := re.match(r"^    (?:  )?cmd: \./bin/recranker (\S+)", ln):  # (a foreach stage's under do:)
            cmds[stage] = m.group(1)
    stage = None
    for ln in lines:
        if m := re.match(r"^  ([a-z-]+):\s*$", ln):
            stage = m.group(1)
        if stage in cmds and re.match(r"^      (?:  )?- (src|stages)/", ln):
            continue  # the old code deps
        out.append(ln)
        if stage in cmds and (m := re.match(r"^(    (?:  )?)deps:", ln)):
            out += [f"{m.group(1)}  - {u}\n" for u in sorted(code_units(modules[cmds[stage]]))]
    (ROOT / "dvc.yaml").write_text("".join(out))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if "--write" in sys.argv:
        rewrite_dvc_yaml()
    for name, (cmd, _) in dvc_stages().items():
        print(f"{name}:")
        for u in sorted(code_units(stage_modules()[cmd])):
            print(f"      - {u}")
