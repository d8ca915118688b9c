"""``imgclf inspect``: model structure, parameters, optimizer state and resolved config of a run."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from imgclf.artifacts import RunDir
from imgclf.config import InspectConfig
from imgclf.console import print_table
from imgclf.engine.checkpoint import load_state
from imgclf.engine.inference import load_run_model
from imgclf.io import read_json


@dataclass
class InspectResult:
    info: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0


def describe_parameters(model: torch.nn.Module) -> list[dict[str, Any]]:
    return [{"name": name, "shape": list(p.shape), "numel": p.numel(), "requires_grad": p.requires_grad,
             "dtype": str(p.dtype).replace("torch.", "")} for name, p in model.named_parameters()]


def counts_per_layer(params: list[dict[str, Any]]) -> "OrderedDict[str, int]":
    """Parameter counts grouped by top-level module (e.g. conv1, layer1, fc)."""
    counts: OrderedDict[str, int] = OrderedDict()
    for p in params:
        top = p["name"].split(".")[0]
        counts[top] = counts.get(top, 0) + p["numel"]
    return counts


def optimizer_summary(run: RunDir) -> dict[str, Any] | None:
    if not run.resume_state.is_file():
        return None
    state = load_state(run.resume_state)
    opt = state.get("optimizer", {})
    groups = [{k: v for k, v in g.items() if k != "params"} | {"num_params": len(g.get("params", []))}
              for g in opt.get("param_groups", [])]
    buffers = sorted({key for s in opt.get("state", {}).values() for key in s})
    return {"step": state["step"], "param_groups": groups, "state_buffers": buffers,
            "tensors_with_state": len(opt.get("state", {}))}


def run(cfg: InspectConfig) -> InspectResult:
    loaded = load_run_model(cfg.run, cfg.checkpoint, device="cpu", precision="fp32", fused=False,
                            trust_model_code=cfg.trust_model_code)
    run_dir = RunDir(cfg.run)
    params = describe_parameters(loaded.model)
    total = sum(p["numel"] for p in params)
    trainable = sum(p["numel"] for p in params if p["requires_grad"])
    info = {"model": loaded.meta["model"], "classes": loaded.classes, "checkpoint": cfg.checkpoint,
            "weights_meta": loaded.meta, "total_parameters": total, "trainable_parameters": trainable,
            "per_layer": counts_per_layer(params), "parameters": params,
            "optimizer": optimizer_summary(run_dir), "config": read_json(run_dir.config_json),
            "structure": str(loaded.model)}
    if cfg.json:
        print(json.dumps(info, indent=2, default=str))
        return InspectResult(info)
    print(info["structure"])
    print()
    print_table(["parameter", "shape", "count", "requires_grad"],
                [[p["name"], "x".join(map(str, p["shape"])), p["numel"], str(p["requires_grad"])] for p in params])
    print()
    print_table(["layer", "parameters"], [[k, v] for k, v in info["per_layer"].items()] + [["total", total]])
    if info["optimizer"]:
        print()
        g = info["optimizer"]
        print(f"optimizer state at step {g['step']}: {g['tensors_with_state']} tensors with "
              f"{', '.join(g['state_buffers']) or 'no'} buffers")
        print_table(list(g["param_groups"][0].keys()), [list(x.values()) for x in g["param_groups"]])
    print()
    print("config:")
    print(json.dumps(info["config"], indent=2))
    return InspectResult(info)
