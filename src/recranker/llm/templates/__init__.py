"""Chat templates for base models that ship none (``llm.chat_template``), as Jinja files."""

from __future__ import annotations

from pathlib import Path

from recranker.errors import RecrankerError

_HERE = Path(__file__).parent


def names() -> list[str]:
    return sorted(p.stem for p in _HERE.glob("*.jinja"))


def chat_template(name_or_path: str) -> str:
    """The Jinja text of a shipped template (e.g. "llama-2") or of a template file."""
    shipped = _HERE / f"{name_or_path}.jinja"
    path = shipped if shipped.is_file() else Path(name_or_path).expanduser()
    if not path.is_file():
        raise RecrankerError(f"llm.chat_template: {name_or_path!r} is neither a shipped template "
                             f"({', '.join(names())}) nor a file")
    text = path.read_text(encoding="utf-8")
    if "messages" not in text:
        raise RecrankerError(f"llm.chat_template: {path} does not look like a chat template (no 'messages')")
    return text
