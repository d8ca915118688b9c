"""imgclf: from folders of images to a trained, understood image classifier.

Each command is also a function here; keyword arguments are the command's
flags with ``_`` for ``-`` (see ``imgclf <command> --help``)::

    import imgclf
    imgclf.prepare("raw/", "data/", val=0.2)
    result = imgclf.train("data/", model="resnet18", epochs=5)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "__version__", "calibrate", "demo", "enhance", "evaluate", "explain", "export", "inspect", "label_issues",
    "mistakes", "predict", "prepare", "report", "show", "stats", "train",
]


def _run(name: str, **options: Any) -> Any:
    from imgclf.cli import make_config, run_command

    return run_command(name, make_config(name, options))


def prepare(src: Any, dst: Any, **options: Any) -> Any:
    """Verify, deduplicate and split raw images into ``dst``; see ``imgclf prepare --help``."""
    return _run("prepare", src=src, dst=dst, **options)


def stats(data: Any, **options: Any) -> Any:
    """Counts, sizes and mean/std of a data folder; see ``imgclf stats --help``."""
    return _run("stats", data=data, **options)


def show(data: Any, **options: Any) -> Any:
    """Write a grid PNG of random samples; see ``imgclf show --help``."""
    return _run("show", data=data, **options)


def train(data: Any = None, **options: Any) -> Any:
    """Train a classifier and write a run folder; see ``imgclf train --help``."""
    return _run("train", data=data, **options)


def evaluate(run: Any, data: Any = None, **options: Any) -> Any:
    """Evaluate a run's weights on a split; see ``imgclf evaluate --help``."""
    return _run("evaluate", run=run, data=data, **options)


def predict(run: Any, paths: Any, **options: Any) -> Any:
    """Top-k predictions for files or folders; see ``imgclf predict --help``."""
    paths = (paths,) if isinstance(paths, (str, bytes)) or not hasattr(paths, "__iter__") else tuple(paths)
    return _run("predict", run=run, paths=paths, **options)


def export(run: Any, **options: Any) -> Any:
    """Export a run's model to ONNX or TorchScript with its sidecar; see ``imgclf export --help``."""
    return _run("export", run=run, **options)


def calibrate(run: Any, data: Any = None, **options: Any) -> Any:
    """Fit and store a calibration temperature; see ``imgclf calibrate --help``."""
    return _run("calibrate", run=run, data=data, **options)


def inspect(run: Any, **options: Any) -> Any:
    """Describe a run's model, parameters and config; see ``imgclf inspect --help``."""
    return _run("inspect", run=run, **options)


def mistakes(run: Any, data: Any = None, **options: Any) -> Any:
    """Collect and rank misclassified images; see ``imgclf mistakes --help``."""
    return _run("mistakes", run=run, data=data, **options)


def enhance(run: Any, images: Any = None, **options: Any) -> Any:
    """Test intensity enhancements on mistakes or any images; see ``imgclf enhance --help``."""
    return _run("enhance", run=run, images=images, **options)


def explain(run: Any, images: Any = (), **options: Any) -> Any:
    """Grad-CAM heatmaps for a split or for files; see ``imgclf explain --help``."""
    images = (images,) if isinstance(images, (str, bytes)) or not hasattr(images, "__iter__") else tuple(images)
    return _run("explain", run=run, images=images, **options)


def label_issues(data: Any = None, **options: Any) -> Any:
    """Likely label errors in a split from K-fold models; see ``imgclf label-issues --help``."""
    return _run("label-issues", data=data, **options)


def report(run: Any, **options: Any) -> Any:
    """Write RUN/report.html; see ``imgclf report --help``."""
    return _run("report", run=run, **options)


def demo(**options: Any) -> Any:
    """The whole pipeline on bundled real data; see ``imgclf demo --help``."""
    return _run("demo", **options)
