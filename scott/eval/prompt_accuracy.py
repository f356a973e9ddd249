"""Does an image show what its prompt says? Classifier predictions scored against the attributes a prompt names."""

from __future__ import annotations

import torch

from scott.data.attributes import ATTRIBUTE_NAMES


def prompt_accuracy(predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Score predicted labels (B, A) against prompt targets (B, A), where -1 marks an attribute the prompt leaves open.

    Returns per-attribute accuracy over the prompts that name the attribute (absent when none does), and
    "prompt_accuracy": the fraction of images with every named attribute right.
    """
    if predicted.shape != targets.shape or predicted.shape[1] != len(ATTRIBUTE_NAMES):
        raise ValueError(f"expected two (B, {len(ATTRIBUTE_NAMES)}) tensors, got {predicted.shape} and {targets.shape}")
    named = targets >= 0
    right = (predicted == targets) | ~named
    out: dict[str, float] = {}
    for i, name in enumerate(ATTRIBUTE_NAMES):
        if named[:, i].any():
            out[f"accuracy_{name}"] = float(right[named[:, i], i].double().mean())
    out["prompt_accuracy"] = float(right.all(dim=1).double().mean())
    return out
