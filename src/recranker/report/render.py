"""Render a :class:`~recranker.report.model.Report` to Markdown, self-contained HTML and PNG bytes.

Deterministic: no timestamps, fixed matplotlib style and PNG metadata (no "Software" tag), so the
same report renders to the same bytes.
"""

from __future__ import annotations

import base64
import html
import io

from .model import Plot, Report, Table

_RC = {  # independent of any user matplotlibrc
    "figure.dpi": 100, "savefig.dpi": 100, "font.family": "DejaVu Sans", "font.size": 9,
    "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "recranker", "path.simplify": False,
}


def render_plot(plot: Plot) -> bytes:
    """PNG bytes of one plot (matplotlib Agg, no global pyplot state)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(7.0, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        if plot.kind == "bar":
            for s in plot.series:
                ax.bar(s.x, s.y, color="C0")
        else:
            for i, s in enumerate(plot.series):
                order = sorted(range(len(s.x)), key=lambda j: s.x[j])
                ax.plot([s.x[j] for j in order], [s.y[j] for j in order], s.style, color=f"C{i % 10}",
                        label=s.label, ms=4)
        if plot.xticklabels:
            ticks = sorted(plot.xticklabels)
            ax.set_xticks(ticks, [plot.xticklabels[t] for t in ticks], fontsize=7)
        if plot.logy:
            ax.set_yscale("log")
        if plot.empty:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, fontsize=14)
        elif plot.kind != "bar":
            ax.legend(fontsize=6, loc="best")
        ax.set_title(plot.title)
        ax.set_xlabel(plot.xlabel)
        ax.set_ylabel(plot.ylabel)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def render_plots(report: Report) -> dict[str, bytes]:
    """``{plot name: PNG bytes}`` for every plot of the report."""
    return {p.name: render_plot(p) for s in report.sections for p in s.plots}


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(t: Table) -> str:
    lines = [f"**{t.title}**", ""]
    if t.rows:
        lines.append("| " + " | ".join(_md_cell(c) for c in t.columns) + " |")
        lines.append("|" + "|".join("---" for _ in t.columns) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines)


def to_markdown(report: Report, plot_dir: str = "plots") -> str:
    out = [f"# {report.title}", ""]
    for s in report.sections:
        out += [f"## {s.title}", ""]
        if s.text:
            out += [s.text, ""]
        for t in s.tables:
            out += [markdown_table(t), ""]
        for p in s.plots:
            out += [f"![{p.title}]({plot_dir}/{p.name}.png)", ""]
    return "\n".join(out).rstrip() + "\n"


def _html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
    note = f"<p class='note'>{e(t.note)}</p>" if t.note else ""
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>" if t.rows else ""
    return f"<h3>{e(t.title)}</h3>{table}{note}"


_CSS = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;font-size:12px;margin-bottom:1em;display:block;overflow-x:auto}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
        "td:first-child,th:first-child{text-align:left}.note{color:#666;font-style:italic}img{max-width:100%}")


def to_html(report: Report, images: dict[str, bytes]) -> str:
    """One self-contained page: plots embedded as base64 PNG."""
    e = html.escape
    head = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{e(report.title)}</h1>")
    parts = [head]
    for s in report.sections:
        parts.append(f"<h2>{e(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{e(s.text)}</p>")
        parts += [_html_table(t) for t in s.tables]
        for p in s.plots:
            data = base64.b64encode(images[p.name]).decode("ascii")
            parts.append(f"<img alt='{e(p.title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
