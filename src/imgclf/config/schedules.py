"""The ``--scheduler`` chain and ``--sched-args`` syntax, checked without importing torch.

``--scheduler exponential,multistep --sched-args exponential:gamma=0.9 "multistep:milestones=30|80,gamma=0.1"``:
a comma-separated chain, and per scheduler ``NAME:key=value,key=value`` (lists joined with ``|``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def int_list(text: str) -> tuple[int, ...]:
    """``"30|80"`` -> (30, 80)."""
    return tuple(int(v) for v in str(text).split("|") if v.strip())


def anneal(text: str) -> str:
    if text not in ("cos", "linear"):
        raise ValueError(text)
    return text


# name -> its parameters and how to read each from text
SCHEDULER_PARAMS: dict[str, Mapping[str, Callable[[str], Any]]] = {
    "constant": {},
    "step": {"step_size": int, "gamma": float},
    "multistep": {"milestones": int_list, "gamma": float},
    "exponential": {"gamma": float},
    "cosine": {},
    "onecycle": {"pct_start": float, "div_factor": float, "final_div_factor": float, "anneal": anneal},
    "plateau": {"metric": str, "factor": float, "patience": int, "threshold": float, "cooldown": int},
}


def parse_chain(text: str) -> list[str]:
    """``"exponential,multistep"`` -> ["exponential", "multistep"]."""
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_sched_args(items: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``["multistep:milestones=30|80,gamma=0.1"]`` -> ({"multistep": {...}}, problems)."""
    parsed: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for item in items:
        name, sep, body = (part.strip() for part in item.partition(":"))
        if not sep or name not in SCHEDULER_PARAMS:
            problems.append(f"--sched-args: {item!r} must look like NAME:key=value,... with NAME one of "
                            f"{', '.join(SCHEDULER_PARAMS)}")
            continue
        params = SCHEDULER_PARAMS[name]
        for pair in filter(None, (p.strip() for p in body.split(","))):
            key, eq, value = (part.strip() for part in pair.partition("="))
            if not eq or key not in params:
                allowed = ", ".join(params) or "no parameters"
                problems.append(f"--sched-args: {name}: {pair!r} is not key=value with key one of: {allowed}")
                continue
            try:
                parsed.setdefault(name, {})[key] = params[key](value)
            except ValueError:
                problems.append(f"--sched-args: {name}: cannot read {value!r} for {key}")
    return parsed, problems


def check_chain(chain: str, sched_args: Sequence[str]) -> list[str]:
    """Problems with a ``--scheduler`` chain and its ``--sched-args``, naming the flags."""
    names = parse_chain(chain)
    problems = [f"--scheduler: {n!r} is not one of {', '.join(SCHEDULER_PARAMS)}"
                for n in names if n not in SCHEDULER_PARAMS]
    if not names:
        problems.append("--scheduler: give at least one name (constant for none)")
    if "onecycle" in names and len(names) > 1:
        problems.append("--scheduler: onecycle sets the lr itself and cannot be chained")
    if len(set(names)) != len(names):
        problems.append(f"--scheduler: a name appears twice in {chain!r}")
    parsed, arg_problems = parse_sched_args(sched_args)
    problems += arg_problems
    problems += [f"--sched-args: {n} is not in --scheduler {chain}" for n in parsed if n not in names]
    return problems
