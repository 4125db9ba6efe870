from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every params section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
