"""Model registry: torchvision classification models by name, our small CNN, timm models as
``timm/<name>`` (when the ``timm`` extra is installed), or a user's class.

``create_model(name, num_classes, in_channels)`` always returns a model whose
classifier head has ``num_classes`` outputs and whose stem takes ``in_channels``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Collection
from functools import lru_cache

from torch import nn

from imgclf.errors import CheckpointError, ImgclfError, UsageError
from imgclf.models.fastnet import FASTNETS, FastNet
from imgclf.models.small_cnn import SmallCNN

LOCAL_MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "small_cnn": lambda num_classes, in_channels: SmallCNN(num_classes, in_channels),
    **{name: (lambda num_classes, in_channels, spec=spec: FastNet(spec, num_classes, in_channels))
       for name, spec in FASTNETS.items()},
}


@lru_cache(maxsize=1)
def torchvision_models() -> tuple[str, ...]:
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


@lru_cache(maxsize=1)
def timm_models() -> tuple[str, ...]:
    """``timm/<name>`` for every timm architecture; empty when timm is not installed."""
    try:
        import timm
    except ImportError:
        return ()
    return tuple(f"timm/{name}" for name in timm.list_models())


def _create_timm_model(arch: str, num_classes: int, in_channels: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise UsageError(f"--model timm/{arch}: timm is not installed; pip install 'imgclf[timm]'") from None
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch}*")[:8]
        hint = f" (did you mean: {', '.join('timm/' + c for c in close)}?)" if close else ""
        raise UsageError(f"--model timm/{arch}: timm has no such architecture{hint}")
    # pretrained=False: nothing is downloaded; --pretrained FILE or --weights load weights afterwards
    return timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_channels)


# "<family>/<architecture>" names and the function that builds them
FAMILIES: dict[str, Callable[[str, int, int], nn.Module]] = {
    "timm": _create_timm_model,
}


def list_models() -> list[str]:
    return sorted(LOCAL_MODELS) + list(torchvision_models()) + list(timm_models())


def create_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build a fresh (randomly initialised) model; never downloads anything."""
    if name in LOCAL_MODELS:
        return LOCAL_MODELS[name](num_classes, in_channels)
    family, slash, arch = name.partition("/")
    if slash and family in FAMILIES and ":" not in name:
        return FAMILIES[family](arch, num_classes, in_channels)
    if ":" in name:
        return _create_user_model(name, num_classes, in_channels)
    if name not in torchvision_models():
        close = [m for m in list_models() if name.lower() in m][:8]
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise UsageError(f"--model: unknown model {name!r}{hint}; see imgclf train --list-models")
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        adapt_input_channels(model, in_channels)
    return model


def import_model_class(spec: str) -> type[nn.Module]:
    """The class named by ``package.module:ClassName``; importing its module runs that module's code."""
    module_name, _, class_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"--model {spec}: cannot import it ({err}); the module must be importable "
                         "(installed, or on PYTHONPATH)") from err
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"--model {spec}: {class_name} is not a torch.nn.Module class")
    return cls


Trust = bool | Collection[str]   # True: any model; a collection: these package.module:Class names


def check_trusted(spec: str, trust: Trust, where: str, alternative: str = "") -> None:
    """Refuse a ``package.module:Class`` model named by a file (checkpoint, run config) without consent.

    Building it imports ``package.module``, which runs that module's code; torchvision and
    imgclf's own models need no consent. ``trust`` is ``--trust-model-code`` (True) or the
    model names the user typed on the command line.
    """
    if ":" not in spec or trust is True or (not isinstance(trust, bool) and spec in trust):
        return
    raise CheckpointError(f"{where}: names the model {spec!r}; building it imports and runs the module "
                          f"{spec.partition(':')[0]!r}. If you trust it, pass --trust-model-code{alternative}")


def _create_user_model(spec: str, num_classes: int, in_channels: int) -> nn.Module:
    cls = import_model_class(spec)
    params = inspect.signature(cls).parameters
    kwargs = {"num_classes": num_classes} if "num_classes" in params else {}
    if "in_channels" in params:
        kwargs["in_channels"] = in_channels
    model = cls(**kwargs)
    if "num_classes" not in params:
        replace_head(model, num_classes)
    return model


def adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Replace the first 3-channel conv with one taking ``in_channels`` (weights averaged)."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                new = nn.Conv2d(in_channels, child.out_channels, child.kernel_size, child.stride,
                                child.padding, child.dilation, child.groups, child.bias is not None)
                new.weight.data = child.weight.data.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
                if child.bias is not None:
                    new.bias.data = child.bias.data.clone()
                setattr(parent, child_name, new)
                return
    raise ImgclfError("this model has no 3-channel input conv to adapt; use --channels rgb")


def find_head(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent, attribute, layer) of the last Linear layer: the classifier head."""
    found = None
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, child_name, child)
    if found is None:
        raise ImgclfError("cannot find a Linear classifier head in this model")
    return found


def replace_head(model: nn.Module, num_classes: int) -> None:
    parent, attr, head = find_head(model)
    if head.out_features != num_classes:
        setattr(parent, attr, nn.Linear(head.in_features, num_classes, bias=head.bias is not None))


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the head's parameters (for separate learning rates or freezing the backbone)."""
    _, _, head = find_head(model)
    ids = {id(p) for p in head.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}
