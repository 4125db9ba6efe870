from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every params section: unknown keys are errors, values are validated on assignment,
    and every float is finite (``.inf`` / ``.nan`` are refused)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)
