"""The machinery that turns a frozen dataclass into CLI flags and a config file schema.

One field is one flag: ``eval_every`` <-> ``--eval-every``; the type comes from the
annotation, the help from ``opt(..., help=...)``. Values are merged
defaults < ``--config`` file < flags, and every problem is reported at once.
No heavy imports here: ``imgclf --help`` must stay instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from imgclf.errors import UsageError

MISSING = dataclasses.MISSING
METAVARS = {int: "N", float: "X", Path: "PATH", str: "NAME"}


def opt(default: Any = MISSING, help: str = "", *, positional: bool = False,
        metavar: str | None = None, flag: str | None = None, switch: bool = False,
        min: float | None = None, max: float | None = None, above: float | None = None,
        below: float | None = None, resumable: bool = False) -> Any:
    """Declare a config field: its default, its help text, how it appears on the CLI and what it allows.

    A bool is ``--name/--no-name``; ``switch=True`` makes it a plain ``--name`` (for actions such
    as --force or --json that a config file has no reason to turn off). ``min``/``max`` are
    inclusive bounds, ``above``/``below`` exclusive ones; the choices of a field are its
    ``Literal[...]`` annotation. ``resumable=True``: ``train --resume`` may change it.
    """
    meta = {"help": help, "positional": positional, "metavar": metavar, "flag": flag, "switch": switch,
            "bounds": Bounds(min, max, above, below), "resumable": resumable}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The numeric range a field allows: ``min``/``max`` inclusive, ``above``/``below`` exclusive."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None

    def problem(self, value: float) -> str | None:
        """What is wrong with ``value``, in words, or None when it is allowed."""
        low_ok = (self.min is None or value >= self.min) and (self.above is None or value > self.above)
        high_ok = (self.max is None or value <= self.max) and (self.below is None or value < self.below)
        if low_ok and high_ok:
            return None
        return f"must be {self.describe()}, got {value:g}"

    def describe(self) -> str:
        """``at least 1``, ``0 or more``, ``positive``, ``in [0, 1)``..."""
        low = self.min if self.above is None else self.above
        high = self.max if self.below is None else self.below
        if high is None:
            if self.above is not None:
                return "positive" if low == 0 else f"more than {low:g}"
            return "0 or more" if low == 0 else f"at least {low:g}"
        if low is None:
            return f"at most {high:g}" if self.below is None else f"below {high:g}"
        return (f"in {'[' if self.above is None else '('}{low:g}, {high:g}"
                f"{']' if self.below is None else ')'}")


def resumable_fields(cls: type) -> tuple[str, ...]:
    """The fields of a config that ``--resume`` may change (declared ``opt(..., resumable=True)``)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


def ordered_fields(cls_or_cfg: Any) -> list[dataclasses.Field]:
    """A config's fields, its own first and the shared ones (declared keyword-only in a base) after."""
    return sorted(dataclasses.fields(cls_or_cfg), key=lambda f: bool(f.kw_only))


def flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


class NotANumberOrChoice(ValueError, argparse.ArgumentTypeError):
    """A value that is neither a number nor one of the words (argparse shows its message as is)."""


@dataclasses.dataclass(frozen=True)
class NumberOrChoice:
    """The type of a field annotated ``float | Literal["auto", ...]``: a number or one of a few words."""

    number: type
    choices: tuple[str, ...]

    @property
    def __name__(self) -> str:   # for messages: "expected a number or auto, got 'x'"
        return f"a number or {' or '.join(self.choices)}"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str) and value in self.choices:
            return value
        try:
            if isinstance(value, bool):
                raise ValueError(value)
            return self.number(value)
        except (TypeError, ValueError):
            raise NotANumberOrChoice(f"expected {self.__name__}, got {value!r}") from None


def _number_or_choice(tp: Any) -> NumberOrChoice | None:
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else ()
    numbers = [a for a in args if a in (int, float)]
    words = [w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)]
    if len(numbers) == 1 and words and len(args) == 2:
        return NumberOrChoice(numbers[0], tuple(words))
    return None


def _scalar_parser(tp: Any) -> Any:
    """The callable that parses one CLI string into a value of type ``tp``."""
    if isinstance(tp, NumberOrChoice):
        return tp
    if tp is Path:
        return Path
    if tp in (int, float, str):
        return tp
    if typing.get_origin(tp) is Literal:
        return type(typing.get_args(tp)[0])
    raise TypeError(f"unsupported config field type {tp!r}")


def _field_shape(tp: Any) -> tuple[Any, bool, bool]:
    """(scalar type, is_tuple, is_optional) of an annotation."""
    if (either := _number_or_choice(tp)) is not None:
        return either, False, False
    tp, optional = _unwrap_optional(tp)
    if typing.get_origin(tp) is tuple:
        return typing.get_args(tp)[0], True, optional
    return tp, False, optional


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per dataclass field. Defaults are suppressed so we can tell what was given."""
    hints = typing.get_type_hints(cls)
    for field in ordered_fields(cls):
        scalar, is_tuple, optional = _field_shape(hints[field.name])
        meta = field.metadata
        help_text = meta.get("help", "")
        if field.default is not MISSING and field.default not in (None, (), ""):
            default = field.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text += f" (default: {shown})"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        elif isinstance(scalar, NumberOrChoice):
            kwargs["metavar"] = "|".join((METAVARS[scalar.number], *scalar.choices))
        elif scalar in METAVARS and not meta.get("positional"):
            kwargs["metavar"] = METAVARS[scalar]
        if typing.get_origin(scalar) is Literal:
            kwargs["choices"] = list(typing.get_args(scalar))
        if meta.get("positional"):
            if is_tuple:
                kwargs["nargs"] = "+" if field.default is MISSING else "*"
            elif field.default is not MISSING:
                kwargs["nargs"] = "?"
            if field.default is not MISSING:
                kwargs["default"] = None   # argparse mishandles SUPPRESS here; None = not given
            kwargs["type"] = _scalar_parser(scalar)
            parser.add_argument(field.name, **kwargs)
            continue
        if scalar is bool:
            kwargs["action"] = "store_true" if meta.get("switch") else argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _scalar_parser(scalar)
            if is_tuple:
                kwargs["nargs"] = "+"
        parser.add_argument(flag_name(field), dest=field.name, **kwargs)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON file of ``field = value`` pairs (``-`` or ``_`` in names)."""
    try:
        text = path.read_bytes()
    except OSError as err:
        raise UsageError(f"--config {path}: cannot read it ({err.strerror})") from err
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"--config {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}") from err
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a table of settings")
    return {key.replace("-", "_"): value for key, value in data.items()}


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert a value from a config file (or Python call) to the field's type."""
    scalar, is_tuple, optional = _field_shape(tp)
    if value is None and optional:
        return None
    if is_tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce_scalar(name, v, scalar) for v in value)
    return _coerce_scalar(name, value, scalar)


def _coerce_scalar(name: str, value: Any, scalar: Any) -> Any:
    if scalar is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UsageError(f"{name}: expected true or false, got {value!r}")
    if scalar is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    parser = _scalar_parser(scalar)
    if isinstance(parser, type) and isinstance(value, parser) and not isinstance(value, bool):
        return value
    try:
        return parser(value)
    except NotANumberOrChoice as err:
        raise UsageError(f"{name}: {err}") from err
    except (TypeError, ValueError) as err:
        raise UsageError(f"{name}: cannot read {value!r} as {parser.__name__}") from err


def build_config(cls: type, given: Mapping[str, Any], file_values: Mapping[str, Any] | None = None) -> Any:
    """defaults < ``cls.preset`` < file < given; convert types, check choices, run ``cls.check``; raise all problems."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems: list[str] = []
    merged: dict[str, Any] = {}
    for source in (file_values or {}), given:
        for name, value in source.items():
            if name not in fields:
                problems.append(f"unknown setting {name!r} for this command")
                continue
            try:
                merged[name] = _coerce(flag_name(fields[name]), value, hints[name])
            except UsageError as err:
                problems.append(str(err))
    declared: list[str] = []
    for name, field in fields.items():
        if name not in merged and field.default is MISSING:
            label = name if field.metadata.get("positional") else flag_name(field)
            problems.append(f"{label} is required")
        elif name in merged:
            declared += _value_problems(field, hints[name], merged[name])
    if problems:
        raise UsageError("\n".join(problems + declared))
    if hasattr(cls, "preset"):   # defaults that depend on other options, for the fields not given
        try:
            merged.update(cls.preset(merged))
        except UsageError as err:
            declared.append(str(err))
    cfg = cls(**merged)
    problems = declared + (cfg.check() if hasattr(cfg, "check") else [])
    if problems:
        raise UsageError("\n".join(problems))
    return cfg


def _value_problems(field: dataclasses.Field, tp: Any, value: Any) -> list[str]:
    """What the field's declaration (Literal choices, numeric bounds) says about a given value."""
    scalar, _, _ = _field_shape(tp)
    allowed = typing.get_args(scalar) if typing.get_origin(scalar) is Literal else None
    bounds: Bounds = field.metadata.get("bounds", Bounds())
    problems = []
    for item in value if isinstance(value, tuple) else (value,):
        if item is None:
            continue
        if allowed is not None and item not in allowed:
            problems.append(f"{flag_name(field)}: {item!r} is not one of {', '.join(map(str, allowed))}")
        elif isinstance(item, (int, float)) and not isinstance(item, bool) and (why := bounds.problem(item)):
            problems.append(f"{flag_name(field)}: {why}")
    return problems


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (paths as strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[field.name] = value
    return out


def command_line(prog: str, cfg: Any) -> str:
    """The shortest command line that rebuilds ``cfg``: positionals, then non-default flags."""
    import shlex

    parts = prog.split()
    for field in ordered_fields(cfg):
        value = getattr(cfg, field.name)
        if field.metadata.get("positional"):
            if value is not None:
                parts += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
            continue
        if field.default is not MISSING and value == field.default:
            continue
        name = flag_name(field)
        if isinstance(value, bool):
            parts.append(name if value else "--no-" + name[2:])
        elif isinstance(value, tuple):
            parts += [name, *map(str, value)]
        elif value is not None:
            parts += [name, str(value)]
    return " ".join(shlex.quote(p) for p in parts)
