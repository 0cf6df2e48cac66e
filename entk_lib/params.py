"""Validation helpers for chapter parameters and public functions.

Every check raises :class:`ValueError` whose message names the parameter, the value it got and the
allowed range, so that a papermill run with a bad ``-p`` value stops at the first cell with a
message a user can act on.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar

import yaml

__all__ = [
    "DERIVED",
    "ChapterParams",
    "check_cliff_fields",
    "check_choice",
    "check_int",
    "check_int_list",
    "check_list",
    "check_prime",
    "check_real",
    "check_real_list",
    "is_prime",
    "parse_yaml_string",
]


#: The default of a parameter that follows others (``spectrum_epochs = "derived"``): the params
#: dataclass computes it from the rest, so that changing one parameter never breaks another.
DERIVED = "derived"


class ChapterParams:
    """Base of every chapter's parameter dataclass: the one source of the chapter's defaults.

    A notebook's ``parameters`` cell repeats the dataclass defaults (a test checks that they
    agree) and builds its params in one call, ``Params.from_namespace(globals())``, so a
    papermill ``-p`` value reaches the dataclass, which validates it. Parameters that depend on
    others default to :data:`DERIVED` and are computed in ``__post_init__`` by :meth:`derive`;
    an explicit value that does not fit gets an error naming both parameters.

    Subclasses list in ``variations`` small valid values for every field (a shorter run,
    another prime ``p`` ...): the test suite builds the params with each one changed alone and
    requires them to validate.
    """

    variations: ClassVar[dict[str, list]] = {}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default, as declared (derived ones as :data:`DERIVED`)."""
        out = {}
        for f in dataclasses.fields(cls):
            out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        return out

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]):
        """Build from a notebook's ``globals()`` (the parameters cell, after papermill's
        injected cell): every field is read by its name; a missing one is an error."""
        missing = [n for n in cls.field_names() if n not in namespace]
        if missing:
            raise ValueError(f"{cls.__name__}: the parameters {missing} are not defined")
        return cls(**{n: namespace[n] for n in cls.field_names()})

    def derive(self, name: str, rule: Callable[[], Any]) -> bool:
        """Set field ``name`` from ``rule()`` if it is :data:`DERIVED` (or None); return whether
        it was derived. The names of derived fields are kept in ``derived_fields``."""
        if getattr(self, name) is None or getattr(self, name) == DERIVED:
            object.__setattr__(self, name, rule())
            derived = set(getattr(self, "derived_fields", ()))
            object.__setattr__(self, "derived_fields", tuple(sorted(derived | {name})))
            return True
        return False

    def as_dict(self) -> dict[str, Any]:
        """The validated values of every field (derived ones resolved)."""
        return {n: getattr(self, n) for n in self.field_names()}


def parse_yaml_string(value: Any) -> Any:
    """Parse a string as YAML (``papermill -p seeds "[0, 1]"`` passes the list as a string);
    other values, and strings that are not valid YAML, are returned unchanged."""
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def check_list(name: str, values: Any, *, what: str = "values", nonempty: bool = True) -> list:
    """``values`` as a list (YAML strings parsed), or an error naming the parameter."""
    values = parse_yaml_string(values)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"`{name}` must be a list of {what}, got {values!r}")
    if nonempty and len(values) == 0:
        raise ValueError(f"`{name}` must be a non-empty list of {what}, got []")
    return list(values)


def check_int(name: str, value: Any, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"`{name}` must be an integer{_range_text(minimum, maximum)}, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be an integer{_range_text(minimum, maximum)}, got {value}")
    return value


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number in the given interval."""
    interval = _interval_text(low, high, low_inclusive, high_inclusive)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be a finite number{interval}, got {value!r}")
    value = float(value)
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if too_low or too_high:
        raise ValueError(f"`{name}` must be a number{interval}, got {value}")
    return value


def check_cliff_fields(prominence: Any, min_ratio: Any) -> tuple[float, float]:
    """A chapter's ``cliff_prominence`` and ``cliff_min_ratio`` (the book's cliff rule,
    :class:`entk_lib.spectrum.CliffRule`), validated under those names."""
    return (check_real("cliff_prominence", prominence, low=0.0),
            check_real("cliff_min_ratio", min_ratio, low=1.0, low_inclusive=False))


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Raise unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value


def check_int_list(
    name: str, values: Any, *, minimum: int | None = 0, maximum: int | None = None, nonempty=True
) -> list[int]:
    """Return ``values`` as a list of ints, each in ``[minimum, maximum]`` (YAML strings parsed)."""
    values = check_list(name, values, what="integers", nonempty=nonempty)
    return [check_int(f"{name}[{i}]", v, minimum=minimum, maximum=maximum) for i, v in enumerate(values)]


def check_real_list(name: str, values: Any, *, nonempty=True, **interval) -> list[float]:
    """Return ``values`` as a list of floats, each checked by :func:`check_real` with ``interval``."""
    values = check_list(name, values, what="numbers", nonempty=nonempty)
    return [check_real(f"{name}[{i}]", v, **interval) for i, v in enumerate(values)]


def is_prime(n: int) -> bool:
    """Trial-division primality test (fine for the small moduli used here)."""
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


def check_prime(name: str, value: Any, *, odd: bool = True) -> int:
    """Raise unless ``value`` is a prime (an odd prime if ``odd``)."""
    value = check_int(name, value, minimum=3 if odd else 2)
    if not is_prime(value):
        kind = "an odd prime" if odd else "a prime"
        raise ValueError(f"`{name}` must be {kind} (3, 5, 7, 11, ..., 29, ...), got {value}")
    return value


def _range_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def _interval_text(low, high, low_inclusive, high_inclusive) -> str:
    if low is None and high is None:
        return ""
    left = ("[" if low_inclusive else "(") + ("-inf" if low is None else f"{low:g}")
    right = ("inf" if high is None else f"{high:g}") + ("]" if high_inclusive else ")")
    return f" in {left}, {right}"
