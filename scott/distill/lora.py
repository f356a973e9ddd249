"""A tiny LoRA (Hu et al. 2021, arXiv 2106.09685) for nn.Linear, so the trainer needs no `peft`.

W x + (alpha / r) B A x with A (r, in) Kaiming-initialised and B (out, r) zero-initialised, so a
freshly wrapped layer computes exactly what the frozen one did.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = (alpha if alpha is not None else rank) / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = (x.to(self.lora_a.dtype) @ self.lora_a.t()) @ self.lora_b.t()
        return self.base(x) + (self.scale * update).to(x.dtype)


def inject_lora(module: nn.Module, rank: int, targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")) -> int:
    """Replace every nn.Linear whose qualified name ends with one of `targets`; returns how many were wrapped."""
    wrapped = 0
    for name, child in list(module.named_modules()):
        if isinstance(child, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, LoRALinear(child, rank))
            wrapped += 1
    return wrapped
