"""``imgclf <command>``: subcommands generated from the config dataclasses.

A command's module (and torch) is imported only when that command runs, so
``imgclf --help`` and ``imgclf <command> --help`` stay instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf import __version__
from imgclf import config as C
from imgclf.errors import ImgclfError, UsageError


@dataclass(frozen=True)
class Command:
    config_cls: type
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "prepare": Command(C.PrepareConfig, "imgclf.commands.prepare", "verify, deduplicate and split raw images"),
    "stats": Command(C.StatsConfig, "imgclf.commands.stats", "class counts, image sizes, mean/std"),
    "show": Command(C.ShowConfig, "imgclf.commands.show", "a grid PNG of random samples"),
    "train": Command(C.TrainConfig, "imgclf.commands.train", "train a classifier, write a run folder"),
    "lr-find": Command(C.LrFindConfig, "imgclf.commands.lr_find", "learning-rate range test: loss vs lr, a suggested lr"),
    "evaluate": Command(C.EvaluateConfig, "imgclf.commands.evaluate", "metrics, confusion matrix, predictions.csv"),
    "mistakes": Command(C.MistakesConfig, "imgclf.commands.mistakes", "collect and rank misclassified images"),
    "explain": Command(C.ExplainConfig, "imgclf.commands.explain", "Grad-CAM heatmaps: where the model looks"),
    "enhance": Command(C.EnhanceConfig, "imgclf.commands.enhance", "do intensity enhancements rescue mistakes?"),
    "label-issues": Command(C.LabelIssuesConfig, "imgclf.commands.label_issues",
                            "likely label errors in any split, from K-fold out-of-sample probabilities"),
    "calibrate": Command(C.CalibrateConfig, "imgclf.commands.calibrate", "fit a temperature so probabilities are honest"),
    "predict": Command(C.PredictConfig, "imgclf.commands.predict", "top-k classes for new images"),
    "export": Command(C.ExportConfig, "imgclf.commands.export", "ONNX or TorchScript model + JSON sidecar, parity-checked"),
    "inspect": Command(C.InspectConfig, "imgclf.commands.inspect", "model structure, parameters, config"),
    "report": Command(C.ReportConfig, "imgclf.commands.report", "one self-contained HTML page of a run"),
    "demo": Command(C.DemoConfig, "imgclf.commands.demo", "the whole pipeline on bundled real data"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgclf",
        description="From folders of images to a trained, understood image classifier.",
        epilog="Run 'imgclf <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"imgclf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, command in COMMANDS.items():
        doc = (command.config_cls.__doc__ or command.summary).strip()
        p = sub.add_parser(name, help=command.summary, description=doc)
        C.fields.add_arguments(p, command.config_cls)
        p.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="read settings from a TOML or JSON file; flags override it")
    return parser


def make_config(name: str, given: dict[str, Any], config_file: Path | None = None) -> Any:
    """The validated config of command ``name`` from explicit values and an optional file."""
    file_values = C.load_config_file(config_file) if config_file else None
    return C.build_config(COMMANDS[name].config_cls, given, file_values)


TRAIN_EXTRA = ("torch", "torchvision", "safetensors", "sklearn", "matplotlib", "tensorboard")


def run_command(name: str, cfg: Any) -> Any:
    """Import the command's module and run it; returns its result object."""
    try:
        module = importlib.import_module(COMMANDS[name].module)
        return module.run(cfg)
    except ModuleNotFoundError as err:   # a light install (imgclf[infer]) has no torch
        if (err.name or "").split(".")[0] not in TRAIN_EXTRA:
            raise
        raise ImgclfError(f"imgclf {name} needs {err.name}, which is not installed: pip install 'imgclf[train]' "
                          "(predicting from an ONNX export needs only 'imgclf[infer]')") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    name = args.pop("command")
    config_file = args.pop("config", None)
    args = {k: v for k, v in args.items() if v is not None and v != []}
    try:
        cfg = make_config(name, args, config_file)
        result = run_command(name, cfg)
    except UsageError as err:
        for line in str(err).splitlines():
            print(f"imgclf {name}: error: {line}", file=sys.stderr)
        return err.exit_code
    except ImgclfError as err:
        print(f"imgclf {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"imgclf {name}: interrupted", file=sys.stderr)
        return 130
    return int(getattr(result, "exit_code", 0) or 0)


if __name__ == "__main__":
    sys.exit(main())
