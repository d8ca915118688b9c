"""Weight initialisation registry for conv and linear layers (``--init``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Initializer = Callable[[torch.Tensor], object]

INITIALIZERS: dict[str, Initializer | None] = {
    "default": None,   # the layer's own reset_parameters()
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
}


def init_weights(model: nn.Module, name: str) -> None:
    """Re-initialise every Conv and Linear weight with ``name``; biases to zero."""
    init = INITIALIZERS[name]
    if init is None:
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
