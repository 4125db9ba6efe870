"""The base of every hyper-parameter section: one declaration per knob (default, range, doc).

The library's config classes derive from :class:`Section` (or, where a dataclass is needed, are
declared with :func:`settings`); ``stages/params`` assembles them into the params.yaml schema, so
a knob is declared once and a bad value fails naming its params.yaml key (pydantic reports the
path it validated). The library never knows those key paths.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic.fields import FieldInfo

STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class Section(BaseModel):
    """Unknown keys are errors, values are validated on assignment, every float is finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


def settings(cls: type) -> type:
    """A frozen, validated dataclass (unknown keys are errors, floats finite): for settings that
    also carry run context (seed, paths) besides their hyper-parameters, and that callers read
    with :func:`dataclasses.asdict`."""
    return _pydantic_dataclass(frozen=True, config=STRICT)(cls)


def _fields(cls: type) -> dict[str, FieldInfo]:
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return dict(cls.model_fields)
    return dict(cls.__pydantic_fields__)


def declared(cls: type, *names: str, **defaults: Any) -> dict[str, tuple[Any, FieldInfo]]:
    """The declarations (type, default, range, doc) of CLS's fields NAMES for :func:`section`;
    a keyword replaces that field's default with the params profile's value."""
    fields = _fields(cls)
    out = {}
    for name in (*names, *defaults):
        info = fields[name]
        if name in defaults:
            info = FieldInfo.merge_field_infos(info, default=defaults[name])
        out[name] = (info.annotation, info)
    return out


def section(name: str, doc: str, *parts: dict[str, tuple[Any, FieldInfo]], base: type[Section] = Section,
            module: str | None = None) -> type[Section]:
    """A params section named NAME made of library declarations (:func:`declared`) on top of BASE
    (which declares the section's own, stage-level knobs)."""
    fields: dict[str, Any] = {}
    for part in parts:
        fields.update(part)
    model = create_model(name, __base__=base, __doc__=doc, __module__=module or base.__module__, **fields)
    return model


def build(cls: type, section_obj: BaseModel, **context: Any) -> Any:
    """A CLS (library config) from the same-named fields of a params section plus CONTEXT (what
    the caller knows besides hyper-parameters: seed, dataset, paths)."""
    names = set(_fields(cls))
    knobs = {k: getattr(section_obj, k) for k in type(section_obj).model_fields if k in names}
    return cls(**knobs, **context)


def as_dict(obj: Any) -> dict[str, Any]:
    """Field values of a :class:`Section` or a :func:`settings` dataclass."""
    return obj.model_dump() if isinstance(obj, BaseModel) else dataclasses.asdict(obj)
