"""Response schemas that dump by a plan made once from their fields.

marshmallow's dump runs each field's whole machinery for every value: 1.4 ms of a search page
of 20 datasets, as long as describing them. A plan gets each value as marshmallow does and
keeps those the field would pass through unchanged (a ``str`` for a ``String``); the rest go
to the field's own ``_serialize``, nested schemas to their ``dump``. Schemas with dump hooks
take marshmallow's way whole, and fields of other kinds their own ``serialize``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property, partial
from typing import Any

import marshmallow as ma
from marshmallow.decorators import POST_DUMP, PRE_DUMP

# The fields a dump plan reads as marshmallow does (their ``get_value`` is the base one), and
# the type of value each of them passes through unchanged (marshmallow's ``str(value)``...).
_KEPT: dict[type[ma.fields.Field], type] = {
    ma.fields.String: str,
    ma.fields.Integer: int,
    ma.fields.Boolean: bool,
}
_PLANNED = {*_KEPT, ma.fields.Raw, ma.fields.DateTime, ma.fields.Nested, ma.fields.List}
#: Each field's key in the answer, how to get its value, and how to turn it into the answer's.
Plan = list[tuple[str, Callable[[Any], Any], Callable[[Any, Any], Any]]]


class Schema(ma.Schema):
    """A schema whose ``dump`` answers as marshmallow's, by a plan made on first use."""

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        many = self.many if many is None else bool(many)
        plan = self._plan
        if plan is None:
            return super().dump(obj, many=many)
        new = self.dict_class  # a plain dict, or marshmallow 3's OrderedDict when ordered
        if many and obj is not None:
            return [_dumped(each, plan, new) for each in obj]
        return _dumped(obj, plan, new)

    @cached_property
    def _plan(self) -> Plan | None:
        """How to dump each field; None when the schema has dump hooks or serializes its own way."""
        # marshmallow 4 keys hooks by tag, 3 by (tag, many).
        hooks: dict[Any, Any] = self._hooks
        tags = {key[0] if isinstance(key, tuple) else key for key, on in hooks.items() if on}
        if tags & {PRE_DUMP, POST_DUMP} or type(self)._serialize is not ma.Schema._serialize:
            return None
        plan = []
        for attr, field in self.dump_fields.items():
            key = field.data_key if field.data_key is not None else attr
            if type(field) in _PLANNED:
                plan.append((key, self._getter(attr, field), _converter(attr, field)))
            else:
                serialize = partial(field.serialize, attr, accessor=self.get_attribute)
                plan.append((key, serialize, lambda value, obj: value))
        return plan

    def _getter(self, attr: str, field: ma.fields.Field) -> Callable[[Any], Any]:
        """``field.get_value``, a plain dict's key looked up first where that is the same."""
        name = attr if field.attribute is None else field.attribute
        default = field.dump_default
        keyed = "." not in name and type(self).get_attribute is ma.Schema.get_attribute

        def value_of(obj: Any) -> Any:
            value = obj.get(name, ma.missing) if keyed and obj.__class__ is dict else ma.missing
            if value is ma.missing:
                value = self.get_attribute(obj, name, ma.missing)
            if value is ma.missing:
                value = default() if callable(default) else default
            return value

        return value_of


def _dumped(obj: Any, plan: Plan, new: type[dict[Any, Any]]) -> dict[str, Any]:
    out = new()
    for key, value_of, convert in plan:
        value = value_of(obj)
        if value is not ma.missing:
            out[key] = convert(value, obj)
    return out


def _converter(attr: str, field: ma.fields.Field) -> Callable[[Any, Any], Any]:
    """What marshmallow's ``field._serialize`` makes of a value, without it where it can."""
    kind = type(field)
    if kind is ma.fields.Raw:
        return lambda value, obj: value
    if isinstance(field, ma.fields.List) and kind is ma.fields.List:
        inner = _converter(attr, field.inner)
        return lambda value, obj: None if value is None else [inner(each, obj) for each in value]
    if isinstance(field, ma.fields.Nested) and kind is ma.fields.Nested:
        nested = field  # its schema resolved at its first value, as marshmallow does (a name)

        def dumped(value: Any, obj: Any) -> Any:
            if value is None:
                return None
            schema = nested.schema
            return schema.dump(value, many=schema.many or nested.many)

        return dumped
    serialize = field._serialize
    kept = _KEPT.get(kind)
    if isinstance(field, ma.fields.Boolean):  # marshmallow 3 maps its truthy and falsy values
        truthy, falsy = field.truthy, field.falsy
        if not (True in truthy and False in falsy and False not in truthy):
            kept = None
    if kept is None or getattr(field, "as_string", False):
        return lambda value, obj: serialize(value, attr, obj)
    return lambda value, obj: value if value.__class__ is kept else serialize(value, attr, obj)
