"""Who may do what: one rule per action, and the check that every service function makes.

Each service function is declared with ``@use_case("action")`` and calls ``authorize`` with the
identity (and the object, where the rule needs it) before it changes or shows anything. A use
case that returns without having asked raises ``PolicySkipped``: a forgotten check fails every
test that reaches it, as CKAN's ``get_action`` does. Objects a user may not see are reported
as not found, so their existence does not leak.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from dataflow_lite.services.errors import Forbidden, NotFound
from dataflow_lite.services.identity import Identity

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Rule:
    """Whether ``allows(identity, obj)``; refusals raise NotFound when ``hides`` is set."""

    allows: Callable[[Identity, Any], bool]
    hides: bool = False
    refusal: str = "only an administrator may do this"


def _anyone(identity: Identity, _obj: Any) -> bool:
    return True


def _a_user(identity: Identity, _obj: Any) -> bool:
    return identity.user is not None


def _admin(identity: Identity, _obj: Any) -> bool:
    return identity.is_admin


def _owner_or_admin(identity: Identity, obj: Any) -> bool:
    """``obj`` has an owner id (``creator_id`` or ``user_id``) that is the identity's."""
    owner = getattr(obj, "creator_id", None)
    if owner is None:
        owner = getattr(obj, "user_id", None)
    return identity.is_admin or identity.owns(owner)


OWN_OR_ADMIN = Rule(_owner_or_admin, hides=True)
ADMIN = Rule(_admin)
USER = Rule(_a_user, refusal="this needs a user: the server itself has no datasets or settings")
ANYONE = Rule(_anyone)

RULES: dict[str, Rule] = {
    "dataset.create": USER,
    "dataset.read": OWN_OR_ADMIN,
    "dataset.search": ANYONE,
    "dataset.import": ADMIN,
    "dataset.reindex": ADMIN,
    "search.rebuild": ADMIN,
    "file.add": OWN_OR_ADMIN,
    "file.read": OWN_OR_ADMIN,
    "file.search": ANYONE,
    "upload.start": OWN_OR_ADMIN,
    "upload.read": OWN_OR_ADMIN,
    "upload.write": OWN_OR_ADMIN,
    "upload.cancel": OWN_OR_ADMIN,
    "setting.read": USER,
    "setting.change": USER,
    "password.encrypt": ANYONE,
    "endpoint.list": ANYONE,
    "endpoint.activation": USER,
    "endpoint.activate": USER,
    "endpoint.register": ADMIN,
    "endpoint.remove": ADMIN,
    "endpoint.check": ADMIN,
    "user.list": ADMIN,
    "user.add": ADMIN,
    "user.change": ADMIN,
    "key.issue": OWN_OR_ADMIN,
    "key.list": OWN_OR_ADMIN,
    "key.revoke": OWN_OR_ADMIN,
    "instrument.read": ANYONE,
    "instrument.add": ADMIN,
    "field.add": ADMIN,
    "field.change": ADMIN,
    "transfer.read": OWN_OR_ADMIN,
    "transfer.list": ANYONE,
    "transfer.retry": OWN_OR_ADMIN,
    "transfer.cancel": OWN_OR_ADMIN,
    "transfer.adopt": ADMIN,
    "audit.read": ADMIN,
}

#: Every use case (``module.function``) and the action it is declared for.
USE_CASES: dict[str, str] = {}

_asked: ContextVar[list[str] | None] = ContextVar("dataflow_lite_policy_asked", default=None)


class PolicySkipped(AssertionError):
    """A use case returned without asking the policy: a bug, never a user's mistake."""


def authorize(identity: Identity, action: str, obj: Any = None) -> None:
    """Raise Forbidden (or NotFound, for hidden objects) unless ``identity`` may ``action``."""
    rule = RULES[action]
    asked = _asked.get()
    if asked is not None:
        asked.append(action)
    if rule.allows(identity, obj):
        return
    if rule.hides:
        raise NotFound(f"{_what(obj)} not found")
    raise Forbidden(rule.refusal)


def _what(obj: Any) -> str:
    name = type(obj).__name__.lower().replace("datasetfile", "file")
    name = name.replace("resumableupload", "upload")
    return f"{name} {getattr(obj, 'id', '')}".strip()


def use_case(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Declare a service function for ``action``; it must call ``authorize`` before returning."""
    if action not in RULES:
        raise KeyError(f"no policy rule for {action!r}")

    def declare(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            token = _asked.set([])
            try:
                result = function(*args, **kwargs)
                if not _asked.get():
                    raise PolicySkipped(f"{function.__qualname__} never asked the policy")
                return result
            finally:
                _asked.reset(token)

        USE_CASES[f"{function.__module__}.{function.__qualname__}"] = action
        return checked

    return declare
