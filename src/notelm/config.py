"""The base of every frozen settings dataclass: a JSON round trip that refuses unknown keys.

Configs are saved in every run and rebuilt from JSON (STYLE.md §2); a key that no field
matches is a user's typo or a file from another version, and gets a clear error.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, fields
from typing import Any, TypeVar

from notelm.errors import NotelmError

C = TypeVar("C", bound="Config")


class SettingsError(NotelmError, ValueError):
    """Settings that no component accepts (an unknown key, a value out of range)."""


def _listed(value: Any) -> Any:
    """Tuples become lists, recursively, so a dict is exactly what JSON gives back."""
    if isinstance(value, tuple | list):
        return [_listed(v) for v in value]
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    return value


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


class Config:
    """Mixin for frozen dataclasses: ``to_dict`` (JSON-safe) and ``from_dict`` (strict)."""

    def to_dict(self) -> dict[str, Any]:
        return _listed(asdict(self))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(unknown)} for {cls.__name__}; "
                                f"known: {', '.join(sorted(known))}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: v if typing.get_origin(hints[k]) is dict else _tupled(v) for k, v in data.items()})


def require_rates(config: object, section: str, names: tuple[str, ...] = ("dropout",)) -> None:
    """Raise SettingsError unless each named field is a rate in [0, 1) (dropout probabilities)."""
    for name in names:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise SettingsError(f"{section}: {name} must be in [0, 1); got {value!r}")


def require_rotary_heads(config: object, section: str) -> None:
    """Raise SettingsError unless ``dim`` splits into ``n_heads`` heads of an even size (rotary
    positions rotate pairs of a head's channels)."""
    if config.dim % config.n_heads or (config.dim // config.n_heads) % 2:
        raise SettingsError(f"{section}: dim ({config.dim}) must be n_heads ({config.n_heads}) times an even head size")


def require_positive_ints(config: object, section: str, names: tuple[str, ...], *, zero_ok: tuple[str, ...] = ()) -> None:
    """Raise SettingsError unless each named field is an int >= 1 (>= 0 for ``zero_ok``)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name in zero_ok else 1):
            raise SettingsError(f"{section}: {name} must be a positive int; got {value!r}")
