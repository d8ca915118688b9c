"""The ``--set`` sweeps, ``--transforms`` and ``--preprocess`` syntax of the enhancements, checked.

``--set gamma.g=0.4,0.7 clahe.clip=2`` -> one :class:`~imgclf.analysis.enhancements.Variant`
per value (several parameters of one enhancement combine as a grid); ``--preprocess
gamma:g=0.5,eps=0.01`` -> one variant. Every problem is reported at once, naming the flag.
Imports numpy and Pillow (the registry), never torch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from imgclf.analysis.enhancements import ENHANCEMENTS, EnhancementSpec, Variant
from imgclf.errors import UsageError


def _parse_values(setting: str, text: str, problems: list[str], flag: str) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            values.append(float(part))
        except ValueError:
            problems.append(f"{flag} {setting}: {part.strip()!r} is not a number")
    return values


def _check_value(spec: EnhancementSpec, param: str, value: float) -> str | None:
    low, high = spec.limits.get(param, (None, None))
    if not np.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        span = f"{'-inf' if low is None else f'{low:g}'}..{'inf' if high is None else f'{high:g}'}"
        return f"{spec.name}.{param}={value:g} is outside {span}"
    if param in spec.integers and value != int(value):
        return f"{spec.name}.{param} must be a whole number, got {value:g}"
    return None


def _parse_one(setting: str, problems: list[str], flag: str) -> tuple[str, str, list[float]] | None:
    """``name.param=v1,v2`` -> (name, param, values), or None after adding to problems."""
    head, sep, values_text = setting.partition("=")
    name, dot, param = head.strip().partition(".")
    if not sep or not dot or not values_text.strip():
        problems.append(f"{flag} {setting!r}: expected NAME.PARAM=V[,V...], e.g. gamma.g=0.5 or gamma.g=0.4,0.7")
        return None
    if name not in ENHANCEMENTS:
        problems.append(f"{flag} {setting}: unknown enhancement {name!r}; allowed: {', '.join(ENHANCEMENTS)}")
        return None
    spec = ENHANCEMENTS[name]
    if param not in spec.defaults:
        allowed = ", ".join(f"{name}.{p}" for p in spec.defaults) or f"none ({name} has no parameters)"
        problems.append(f"{flag} {setting}: {name} has no parameter {param!r}; allowed: {allowed}")
        return None
    values = _parse_values(setting, values_text, problems, flag)
    for value in values:
        if (message := _check_value(spec, param, value)) is not None:
            problems.append(f"{flag} {setting}: {message}")
    return name, param, values


def parse_settings(settings: Sequence[str], flag: str = "--set") -> list[Variant]:
    """Variants of the enhancements named in ``settings``; sweeps expand to one variant per value.

    Several parameters of one enhancement combine as a grid. Every problem is reported at once
    as a :class:`UsageError` naming ``flag`` and listing what is allowed.
    """
    problems: list[str] = []
    sweeps: dict[str, dict[str, list[float]]] = {}
    for setting in settings:
        if (parsed := _parse_one(setting, problems, flag)) is not None:
            name, param, values = parsed
            sweeps.setdefault(name, {})[param] = values
    if problems:
        raise UsageError("\n".join(problems))
    variants = []
    for name, grid in sweeps.items():
        defaults = ENHANCEMENTS[name].defaults
        for combo in itertools.product(*grid.values()):
            variants.append(Variant(name, {**defaults, **dict(zip(grid, combo))}))
    return variants


def plan_variants(names: Sequence[str], settings: Sequence[str] = (), flag: str = "--transforms") -> list[Variant]:
    """Every variant to try: the named enhancements (all when empty), with their ``--set`` sweeps."""
    unknown = [name for name in names if name not in ENHANCEMENTS]
    if unknown:
        raise UsageError(f"{flag}: unknown enhancement {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(ENHANCEMENTS)}")
    chosen = list(dict.fromkeys(names)) or list(ENHANCEMENTS)
    swept = parse_settings(settings)
    outside = sorted({v.name for v in swept} - set(chosen))
    if outside:
        raise UsageError(f"--set: {', '.join(outside)} is not among {flag} ({', '.join(chosen)})")
    plan = []
    for name in chosen:
        mine = [v for v in swept if v.name == name]
        plan.extend(mine or [Variant(name, dict(ENHANCEMENTS[name].defaults))])
    return plan


def parse_variant(text: str, flag: str = "--preprocess") -> Variant:
    """``histeq`` or ``gamma:g=0.5,eps=0.01`` -> one Variant (the format of ``Variant.label``)."""
    name, _, params_text = text.strip().partition(":")
    settings = [f"{name}.{pair}" for pair in params_text.split(",") if pair.strip()]
    if name not in ENHANCEMENTS:
        raise UsageError(f"{flag} {text}: unknown enhancement {name!r}; allowed: {', '.join(ENHANCEMENTS)}")
    if any("," in s.partition("=")[2] for s in settings):
        raise UsageError(f"{flag} {text}: one value per parameter")
    variants = parse_settings(settings, flag=flag) if settings else []
    return variants[0] if variants else Variant(name, dict(ENHANCEMENTS[name].defaults))
