"""Who asks: a user through an API key or a web session, or the system (the CLI, the worker)."""

from __future__ import annotations

from dataclasses import dataclass

from dataflow_lite.store.models import User


@dataclass(frozen=True)
class Identity:
    """The first argument of every service function; the audit trail records it."""

    #: The user, or None for the system (an administrator at the server's own command line).
    user: User | None
    #: How the request was authenticated: ``api-key 12``, ``web-session``, ``cli``, ``worker``.
    via: str
    #: The client's address, when the request came over the network.
    address: str | None = None

    @property
    def is_admin(self) -> bool:
        """The system and administrators may manage the server."""
        return self.user is None or self.user.is_admin

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user is not None else None

    @property
    def uid(self) -> int:
        """The user's id, for use cases that the policy keeps to users."""
        assert self.user is not None and self.user.id is not None, "the system is no user"
        return self.user.id

    def owns(self, owner_id: int | None) -> bool:
        """Whether the identity is the user ``owner_id``."""
        return self.user is not None and self.user.id == owner_id


def system(via: str = "cli") -> Identity:
    """The server itself: the CLI run by whoever administers the instance, or the worker."""
    return Identity(None, via)
