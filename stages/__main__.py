"""The `recranker` command: one sub-command per DVC stage."""

from __future__ import annotations

import typer

from stages.common import user_errors

app = typer.Typer(
    name="recranker",
    help="RecRanker / DMPO pipeline stages (run them through `dvc repro`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Stage modules import only light libraries at top level; heavy ones inside commands.
    from stages import STAGES

    for name, fn in STAGES:
        app.command(name)(user_errors(fn))


def main() -> None:
    _register()
    app()


if __name__ == "__main__":
    main()
