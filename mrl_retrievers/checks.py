"""Argument checks shared by every layer (and by the framework integrations): written once here.

Only :mod:`mrl_retrievers.errors` below it, so the store, the providers, the config, the types and
the integrations all check counts and widths with the same rule and say it in the same words.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Callable

from .errors import InvalidInputError


def positive_int(
    name: str,
    value: Any,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    error: Callable[[str], Exception] = InvalidInputError,
) -> int:
    """``value`` as an ``int`` if it is an integer in ``minimum..maximum``; else raise ``error(message)``.

    A ``bool`` is refused (it is an ``int`` subclass, but ``True`` is never meant as a count); numpy
    integers are taken (they are ``numbers.Integral``) and returned as plain ``int``, so the value
    can go into JSON and SQL as it is. ``error`` is the exception class (or factory) the caller's
    contract names: ``ConfigError`` for settings, ``InvalidInputError`` for call arguments.

        >>> positive_int("k", 3)
        3
        >>> positive_int("k", 0)
        Traceback (most recent call last):
        ...
        mrl_retrievers.errors.InvalidInputError: k must be a positive integer, got 0
        >>> positive_int("dim", True, maximum=8)
        Traceback (most recent call last):
        ...
        mrl_retrievers.errors.InvalidInputError: dim must be an integer in 1..8, got True
    """
    if (isinstance(value, bool) or not isinstance(value, Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        raise error(f"{name} must be {_wanted(minimum, maximum)}, got {value!r}")
    return int(value)


def _wanted(minimum: int, maximum: int | None) -> str:
    if maximum is not None:
        return f"an integer in {minimum}..{maximum}"
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    return f"an integer >= {minimum}"


__all__ = ["positive_int"]
