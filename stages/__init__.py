"""DVC stages as Typer commands. Each module: read params, call the library, write outputs."""

from __future__ import annotations

import importlib

# (command name, module, function) in pipeline order.
_STAGE_TABLE = [
    ("raw", "stages.raw", "raw"),
    ("prepare", "stages.prepare", "prepare"),
    ("synth", "stages.prepare", "synth"),
    ("backbone", "stages.backbone", "backbone"),
    ("sample", "stages.sample", "sample"),
    ("instruct", "stages.instruct", "instruct"),
    ("preferences", "stages.preferences", "preferences"),
    ("import-preferences", "stages.preferences", "import_preferences"),
    ("base-model", "stages.base_model", "base_model"),
    ("sft", "stages.sft", "sft"),
    ("rank", "stages.rank", "rank"),
    ("evaluate", "stages.evaluate", "evaluate"),
    ("dmpo-sft", "stages.dmpo_sft", "dmpo_sft"),
    ("dmpo", "stages.dmpo", "dmpo"),
    ("pref-eval", "stages.pref_eval", "pref_eval"),
    ("pref-backbone", "stages.pref_backbone", "pref_backbone"),
    ("serve", "stages.serve", "serve"),
    ("report", "stages.report", "report"),
    ("exp", "stages.exp", "exp"),
]


def _load():
    return [(name, getattr(importlib.import_module(module), fn)) for name, module, fn in _STAGE_TABLE]


STAGES = _load()
