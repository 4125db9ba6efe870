"""Experiment report: tables shaped like the papers', sweep plots, provenance (Markdown + HTML).

Pure: takes already-loaded data (``dvc exp show --json`` output, metrics dicts) and returns
strings/bytes; the `report` stage does the reading and writing.
"""

from .build import Inputs, Locations, build
from .expshow import Experiment, parse_exp_show
from .model import NA, NOT_RUN, Plot, Report, Section, Series, Table
from .render import render_plots, to_html, to_markdown

__all__ = [
           "NA",
           "NOT_RUN",
           "Experiment",
           "Inputs",
           "Locations",
           "Plot",
           "Report",
           "Section",
           "Series",
           "Table",
           "build",
           "parse_exp_show",
           "render_plots",
           "to_html",
           "to_markdown",
]
