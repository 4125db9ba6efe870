"""The base of every hyper-parameter section: one declaration per knob (default, range, doc).

The library's config classes derive from :class:`Section`; ``stages/params`` assembles them into
the params.yaml schema, so a knob is declared once and a bad value fails naming its params.yaml
key (pydantic reports the path it validated).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Unknown keys are errors, values are validated on assignment, every float is finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)
