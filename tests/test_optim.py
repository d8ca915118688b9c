"""Optimizers, parameter groups, freezing, LBFGS closure, and the scheduler chains against PyTorch."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as S

from imgclf.config.schedules import check_chain, parse_sched_args
from imgclf.models.registry import create_model, head_parameter_names
from imgclf.training.optim import (OPTIMIZERS, FreezePlan, create_optimizer, optimizer_step, parameter_groups,
                                  set_backbone_frozen, set_lr)
from imgclf.training.schedules import Horizon, LRSchedule, create_schedule
from schedule_reference import ScheduleSpec, lr_factor

BASE_LR = 0.1


def run_schedule(schedule: LRSchedule, spe: int, epochs: int, metrics: list[float] | None = None) -> list[float]:
    """The lr of every optimisation step, driven as the Trainer drives it."""
    lrs = []
    for epoch in range(epochs):
        for _ in range(spe):
            lrs.append(BASE_LR * schedule.factor)
            schedule.after_step()
        schedule.after_epoch({"val_loss": metrics[epoch]} if metrics else None)
    return lrs


def torch_epoch_lrs(make: callable, epochs: int, spe: int, metrics: list[float] | None = None) -> list[float]:
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=BASE_LR)
    sched = make(opt)
    lrs = []
    for epoch in range(epochs):
        for _ in range(spe):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
        sched.step(metrics[epoch]) if metrics else sched.step()
    return lrs


def test_chained_exponential_multistep_equals_pytorch_chain() -> None:
    ours = create_schedule("exponential,multistep", ["exponential:gamma=0.9", "multistep:milestones=3|6,gamma=0.1"],
                           steps_per_epoch=2, epochs=10, warmup_steps=0)
    theirs = torch_epoch_lrs(lambda o: S.ChainedScheduler([S.ExponentialLR(o, 0.9), S.MultiStepLR(o, [3, 6], 0.1)]),
                             10, 2)
    assert run_schedule(ours, 2, 10) == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize("chain, args, make", [
    ("step", ["step:step_size=3,gamma=0.5"], lambda o: S.StepLR(o, 3, 0.5)),
    ("multistep", ["multistep:milestones=2|5"], lambda o: S.MultiStepLR(o, [2, 5], 0.1)),
    ("step,exponential", ["step:step_size=2,gamma=0.5", "exponential:gamma=0.8"],
     lambda o: S.ChainedScheduler([S.StepLR(o, 2, 0.5), S.ExponentialLR(o, 0.8)])),
])
def test_epoch_schedulers_equal_pytorch(chain: str, args: list[str], make: callable) -> None:
    ours = create_schedule(chain, args, steps_per_epoch=3, epochs=8, warmup_steps=0)
    assert run_schedule(ours, 3, 8) == pytest.approx(torch_epoch_lrs(make, 8, 3), rel=1e-12)


def test_plateau_reduces_like_pytorch() -> None:
    metrics = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7, 0.8]
    ours = create_schedule("plateau", ["plateau:patience=1,factor=0.5"], steps_per_epoch=2, epochs=10, warmup_steps=0)
    theirs = torch_epoch_lrs(lambda o: S.ReduceLROnPlateau(o, "min", factor=0.5, patience=1), 10, 2, metrics)
    assert run_schedule(ours, 2, 10, metrics) == pytest.approx(theirs, rel=1e-12)


def test_onecycle_per_step_equals_pytorch() -> None:
    ours = create_schedule("onecycle", ["onecycle:pct_start=0.25"], steps_per_epoch=5, epochs=4, warmup_steps=5)
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=BASE_LR)
    sched = S.OneCycleLR(opt, max_lr=BASE_LR, total_steps=20, pct_start=0.25, cycle_momentum=False)
    theirs = []
    for _ in range(20):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert run_schedule(ours, 5, 4) == pytest.approx(theirs, rel=1e-9)


def test_default_warmup_cosine_matches_the_closed_form() -> None:
    ours = run_schedule(create_schedule("cosine", [], steps_per_epoch=4, epochs=10, warmup_steps=4), 4, 10)
    spec = ScheduleSpec("cosine", total_epochs=10, warmup_epochs=1)
    assert ours == pytest.approx([BASE_LR * lr_factor(s / 4, spec) for s in range(40)], abs=1e-12)
    assert ours[0] == pytest.approx(BASE_LR / 10) and ours[4] == pytest.approx(BASE_LR)


def test_schedule_state_survives_weights_only_and_resumes_the_same_curve() -> None:
    def make() -> LRSchedule:
        return create_schedule("exponential,plateau", ["exponential:gamma=0.9", "plateau:patience=0"],
                               steps_per_epoch=3, epochs=6, warmup_steps=3)
    metrics = [1.0, 1.1, 1.2, 0.5, 0.6, 0.7]
    full = run_schedule(make(), 3, 6, metrics)
    first = make()
    head = run_schedule(first, 3, 2, metrics[:2])
    buffer = io.BytesIO()
    torch.save({"schedule": first.state_dict()}, buffer)
    buffer.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(buffer, weights_only=True)["schedule"])
    tail = []
    for epoch in range(2, 6):
        for _ in range(3):
            tail.append(BASE_LR * resumed.factor)
            resumed.after_step()
        resumed.after_epoch({"val_loss": metrics[epoch]})
    assert head + tail == full


def test_sched_args_are_parsed_and_bad_ones_named() -> None:
    parsed, problems = parse_sched_args(["multistep:milestones=30|80,gamma=0.1", "exponential:gamma=0.9"])
    assert parsed == {"multistep": {"milestones": (30, 80), "gamma": 0.1}, "exponential": {"gamma": 0.9}}
    assert not problems
    problems = check_chain("cosine,onecycle,bogus", ["step:gamma=0.5", "cosine:gamma=1"])
    text = "\n".join(problems)
    assert "'bogus' is not one of" in text and "onecycle" in text and "step is not in --scheduler" in text
    assert "cosine: 'gamma=1'" in text


def test_head_lr_gives_the_head_its_own_group_and_schedules_scale_both() -> None:
    model = create_model("small_cnn", 3)
    opt = create_optimizer("sgd", model, lr=0.01, head_lr=0.1, weight_decay=1e-4)
    head = {id(p) for n, p in model.named_parameters() if n in head_parameter_names(model)}
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= head or not ids & head
        assert group["initial_lr"] == (0.1 if ids <= head else 0.01)
    set_lr(opt, 0.5)
    assert sorted({g["lr"] for g in opt.param_groups}) == [0.005, 0.05]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_freeze_backbone_trains_only_the_head_until_unfreeze() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", 3)
    opt = create_optimizer("sgd", model, lr=0.1, momentum=0.9, weight_decay=1e-3)
    plan = FreezePlan(freeze_backbone=True, unfreeze_at=2)
    assert [plan.frozen_at(e) for e in range(4)] == [True, True, False, False]
    set_backbone_frozen(model, plan.frozen_at(0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(4, 3, 28, 28), torch.tensor([0, 1, 2, 0])
    optimizer_step(opt, lambda: nn.functional.cross_entropy(model(x), y))
    head = head_parameter_names(model)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != (name in head), name
    set_backbone_frozen(model, plan.frozen_at(2))
    optimizer_step(opt, lambda: nn.functional.cross_entropy(model(x), y))
    assert not torch.equal(model.features[0].weight, before["features.0.weight"])


def test_lbfgs_steps_through_a_closure_and_fits_least_squares() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3
    model = nn.Linear(3, 1)
    opt = create_optimizer("lbfgs", model, lr=1.0)
    calls = []

    def forward_loss() -> torch.Tensor:
        calls.append(1)
        return nn.functional.mse_loss(model(x), y)

    first = optimizer_step(opt, forward_loss, clip_grad=100.0)
    for _ in range(5):
        last = optimizer_step(opt, forward_loss)
    assert len(calls) > 6                       # the closure was evaluated several times per step
    assert float(last) < 1e-6 < float(first)
    assert model.weight.detach().tolist()[0] == pytest.approx([1.5, -2.0, 0.5], abs=1e-3)


def test_clip_grad_bounds_the_gradient_norm() -> None:
    model = nn.Linear(4, 2)
    opt = create_optimizer("sgd", model, lr=0.0, momentum=0.0)
    x = torch.randn(8, 4) * 100
    optimizer_step(opt, lambda: model(x).pow(2).mean(), clip_grad=0.5)
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
    assert float(norm) == pytest.approx(0.5, rel=1e-4)


def test_adam_and_adamw_are_registered() -> None:
    model = nn.Linear(2, 2)
    assert isinstance(create_optimizer("adam", model, 1e-3), torch.optim.Adam)
    assert isinstance(create_optimizer("adamw", model, 1e-3, weight_decay=0.01), torch.optim.AdamW)


# --- torch's optimizers, unguarded -----------------------------------------------------------

UNGUARDED = {"sgd": (torch.optim.SGD, dict(momentum=0.9, nesterov=True, weight_decay=5e-4)),
             "adam": (torch.optim.Adam, dict(weight_decay=1e-4)),
             "adamw": (torch.optim.AdamW, dict(weight_decay=0.05))}


def two_group_model(seed: int, weight_decay: float) -> tuple[nn.Module, list[dict]]:
    """Decay on the conv/linear weights, none on biases and BatchNorm: two groups."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    return model, parameter_groups(model, weight_decay)


@pytest.mark.parametrize("name", sorted(UNGUARDED))
def test_unguarded_optimizers_update_and_save_exactly_as_torch(name: str) -> None:
    """Same parameters, state and state_dict as torch's class after every step, and each loads the other's state."""
    torch_class, kwargs = UNGUARDED[name]
    ours_model, ours_groups = two_group_model(0, kwargs["weight_decay"])
    ref_model, ref_groups = two_group_model(0, kwargs["weight_decay"])
    ours = OPTIMIZERS[name](ours_groups, lr=0.01, momentum=kwargs.get("momentum", 0.9),
                            nesterov=kwargs.get("nesterov", False), weight_decay=kwargs["weight_decay"])
    ref = torch_class(ref_groups, lr=0.01, **kwargs)
    assert isinstance(ours, torch_class) and type(ours) is not torch_class
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(4):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad(set_to_none=True)
            model(x).pow(2).mean().backward()
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(ours_model.parameters(), ref_model.parameters()))
    ours_state, ref_state = ours.state_dict(), ref.state_dict()
    assert ours_state["param_groups"] == ref_state["param_groups"]
    assert ours_state["state"].keys() == ref_state["state"].keys()
    for index, entry in ref_state["state"].items():
        assert all(torch.equal(entry[k], ours_state["state"][index][k]) for k in entry)
    ours.load_state_dict(ref_state)
    ref.load_state_dict(ours_state)
    assert all(p.grad is not None for p in ours_model.parameters())
    ours.zero_grad()
    assert all(p.grad is None for p in ours_model.parameters())


def test_a_short_run_never_imports_torch_dynamo(split_data: Path, tmp_path: Path) -> None:
    """The optimizer, the lr schedule and the precision/compile probes stay clear of torch._dynamo,
    whose import costs a small run 1-2 s before its first step (it is imported when compiling)."""
    code = ("import sys, imgclf; imgclf.train(sys.argv[1], out=sys.argv[2], model='small_cnn', epochs=1, "
            "img_size=16, batch_size=16); print('dynamo' if 'torch._dynamo' in sys.modules else 'clear')")
    done = subprocess.run([sys.executable, "-c", code, str(split_data), str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "clear"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 1
