"""Which training checkpoint a re-run may resume from (shared by SFT and DMPO).

A run killed mid-save leaves a ``checkpoint-<step>`` without its ``trainer_state.json`` (the
Trainer writes it last); a run interrupted and started again with another learning rate, other
data or another LoRA rank must not continue the old schedule. So before training:

- the checkpoint directory carries ``fingerprint.json``, the hash of the training params and data
  its checkpoints were made with; a different (or missing) hash means the checkpoints are removed
  and training starts fresh, with a one-line notice;
- the newest complete checkpoint is resumed; an incomplete one, or one whose files do not load
  (a truncated ``optimizer.pt`` or weights file: the disk filled up, a copy was cut short), is set
  aside as ``broken-checkpoint-<step>`` (ignored by the Trainer) with a one-line notice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recranker.errors import RecrankerError

FINGERPRINT = "fingerprint.json"
PREFIX = "checkpoint-"
# What the Trainer writes into every checkpoint; trainer_state.json comes last.
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def _notice(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def digest(fingerprint: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``fingerprint`` (params, data, model hashes)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_files(directory: str | Path) -> str:
    """sha256 over the names and bytes of every file under ``directory`` (a model's identity)."""
    h = hashlib.sha256()
    root = Path(directory)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None when it is complete."""
    for name in REQUIRED:
        if not (checkpoint / name).is_file():
            return f"no {name}"
    if not any((checkpoint / w).is_file() for w in WEIGHTS):
        return "no model weights"
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "unreadable trainer_state.json"
    step = checkpoint.name.removeprefix(PREFIX)
    if not isinstance(state, dict) or str(state.get("global_step")) != step:
        return "trainer_state.json is for another step"
    return _unloadable(checkpoint)


def _unloadable(checkpoint: Path) -> str | None:
    """Why a file of ``checkpoint`` would not load, checked without unpickling anything: torch's
    ``.pt``/``.pth`` files are zip archives (every member's CRC is checked), safetensors files
    must hold every tensor their header lists."""
    import zipfile

    from safetensors import SafetensorError, safe_open

    for f in sorted(checkpoint.rglob("*")):
        name = f.relative_to(checkpoint).as_posix()
        if f.suffix in (".pt", ".pth", ".bin") and f.is_file():
            try:
                with zipfile.ZipFile(f) as zf:
                    bad = zf.testzip()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                return f"{name} does not load ({exc})"
            if bad is not None:
                return f"{name} does not load (member {bad} is damaged)"
        elif f.suffix == ".safetensors" and f.is_file():
            try:
                with safe_open(str(f), framework="pt") as st:
                    _ = list(st.keys())
            except (SafetensorError, OSError, ValueError) as exc:
                return f"{name} does not load ({str(exc)[:120]})"
    return None


def _checkpoints(ckpt_dir: Path) -> list[Path]:
    found = [p for p in ckpt_dir.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def resume_point(ckpt_dir: str | Path, fingerprint: dict[str, Any],
                 say: Callable[[str], None] = _notice) -> str | None:
    """The checkpoint in ``ckpt_dir`` to resume from, or None to start fresh.

    Leaves ``ckpt_dir`` ready for a run with ``fingerprint``: checkpoints of another fingerprint
    removed, incomplete ones set aside, the fingerprint stored. Every decision other than a plain
    fresh start is said in one line.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    want = digest(fingerprint)
    stamp = ckpt_dir / FINGERPRINT
    try:
        have = json.loads(stamp.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        have = None
    found = _checkpoints(ckpt_dir)
    if found and have != want:
        say(f"{ckpt_dir}: checkpoints were made with other training params or data; "
            f"starting fresh (removed {', '.join(p.name for p in found)})")
        for p in found:
            shutil.rmtree(p)
        found = []
    if have != want:
        tmp = stamp.with_name(f".{FINGERPRINT}.{os.getpid()}")
        tmp.write_text(json.dumps({"sha256": want}) + "\n", encoding="utf-8")
        os.replace(tmp, stamp)
    for ck in reversed(found):
        why = problem(ck)
        if why is None:
            say(f"{ck}: resuming (same training params and data)")
            return str(ck)
        aside = ck.with_name(f"broken-{ck.name}")
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(ck, aside)
        say(f"{ck}: incomplete checkpoint ({why}), set aside as {aside.name}")
    return None


def restore_active_adapter(model, checkpoint: str | Path) -> bool:
    """Load the checkpoint's root adapter into ``model``'s active adapter; True if done.

    Needed when a peft model carries a second adapter (trl's DPO keeps the frozen reference as
    "ref"): the checkpoint then holds "ref" in a subfolder, and transformers' resume loads only
    the subfolders, leaving the trained "default" adapter at its starting weights (silently: the
    policy restarts from SFT with a half-finished schedule). Harmless for a single adapter.
    """
    weights = Path(checkpoint) / "adapter_model.safetensors"
    if not hasattr(model, "peft_config") or not weights.is_file():
        return False
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    active = model.active_adapter if isinstance(model.active_adapter, str) else model.active_adapters[0]
    result = set_peft_model_state_dict(model, load_file(str(weights)), adapter_name=active)
    unmatched = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if unmatched:
        raise RecrankerError(f"{weights}: {len(unmatched)} adapter tensors do not match the model")
    return True
