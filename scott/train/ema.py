"""The exponential moving average of a model's weights (the recipe's saved teachers, SCott's target theta^-)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of the model, moved by ema_update after each optimizer step."""
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, in place, for the parameters the model trains (a frozen
    parameter's average is itself)."""
    pairs = [(e, p) for e, p in zip(ema.parameters(), model.parameters(), strict=True) if p.requires_grad]
    if pairs:
        torch._foreach_lerp_([e for e, _ in pairs], [p.detach().to(e.dtype) for e, p in pairs], 1.0 - decay)


def warmup_decay(decay: float, step: int) -> float:
    """min(decay, (1 + step) / (10 + step)): early on the average follows the model, not its random init."""
    return min(decay, (1 + step) / (10 + step))
