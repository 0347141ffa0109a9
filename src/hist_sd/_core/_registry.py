"""Name -> object registries (methods, tasks, networks): one way to add, replace and look up."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T]):
    """A ``dict`` of named entries that refuses silent replacement and names the valid keys on a bad lookup.

    Parameters
    ----------
    what
        What an entry is, for messages (``"method"``).
    arg
        The argument users pass the name as (``"method"`` for ``method=``).
    """

    def __init__(self, what: str, arg: str) -> None:
        super().__init__()
        self.what = what
        self.arg = arg

    def add(self, name: str, obj: T, *, overwrite: bool = False) -> T:
        """Register ``obj`` under ``name``; an existing different entry needs ``overwrite=True``."""
        if name in self and self[name] is not obj and not overwrite:
            raise ValueError(f"A {self.what} named {name!r} is already registered; pass overwrite=True to replace it.")
        self[name] = obj
        return obj

    def lookup(self, name: str) -> T:
        """The entry called ``name``; a ``ValueError`` listing the registered names otherwise."""
        if name not in self:
            raise ValueError(f"`{self.arg}` must be one of {sorted(self)}, got {name!r}.")
        return self[name]
