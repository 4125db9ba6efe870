"""What a report is made of: sections holding tables and plots, as plain data (rendered elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_RUN = "not run"  # an experiment or metrics file that does not exist: never shown as 0
NA = "—"  # the experiment ran but does not produce this value (e.g. a task it did not rank)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]
    style: str = "-o"


@dataclass
class Plot:
    name: str  # file stem: reports/plots/<name>.png
    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    xticklabels: dict[float, str] | None = None
    kind: str = "line"  # line | bar (bar: one series, x = positions, xticklabels = names)
    logy: bool = False

    @property
    def empty(self) -> bool:
        return not any(s.x for s in self.series)


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section]


def fmt(value, digits: int = 4) -> str:
    """A metric cell: floats rounded, ints as is, None as n/a."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def pval(value) -> str:
    """A parameter value as written in params.yaml (no rounding: 2e-05 stays 2e-05)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(pval(v) for v in value) + "]"
    return str(value)


def pct(value) -> str:
    return NA if value is None else f"{value:+.2f}%"
