"""Fold BatchNorm into the preceding convolution for frozen (eval-mode) models such as teachers."""

from __future__ import annotations

import torch.fx as fx
from torch import nn
from torch.fx.experimental.optimization import fuse


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model whose conv → BatchNorm pairs are one convolution (same function).

    Saves the BatchNorm passes (about a fifth of a ResNet110 forward on the CPU); the logits agree with
    the original to float rounding (~1e-7 relative in fp32). Only `model(x) -> logits` is kept. Models
    that fx cannot trace (VGG's input-size branch) are returned unchanged.
    """
    try:
        graph = fx.symbolic_trace(model.eval(), concrete_args={"return_features": False})
    except (fx.proxy.TraceError, TypeError):
        return model
    folded = fuse(graph)
    for attr in ("arch", "num_classes"):
        if hasattr(model, attr):
            setattr(folded, attr, getattr(model, attr))
    return folded.eval()
