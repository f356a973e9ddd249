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
    out = {f"accuracy_{name}": float(right.double().mean()) for name, right in named_right(predicted, targets).items()}
    out["prompt_accuracy"] = float(every_named_right(predicted, targets).double().mean())
    return out


def named_right(predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """attribute -> (images whose prompt names it,) bool: read right; attributes no prompt names are absent."""
    named = targets >= 0
    return {
        name: predicted[named[:, i], i] == targets[named[:, i], i]
        for i, name in enumerate(ATTRIBUTE_NAMES)
        if named[:, i].any()
    }


def every_named_right(predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each image has every attribute its prompt names right (-1 in targets: left open)."""
    return ((predicted == targets) | (targets < 0)).all(dim=1)


def accuracy_within(
    predicted: torch.Tensor, targets: torch.Tensor, attribute: str = "color", within: str = "background"
) -> dict[str, float]:
    """Accuracy of `attribute` among the images whose prompt names each value of `within`: colour on each background,
    "accuracy_color_on_white" etc. (a defect on one background hides in the overall accuracy)."""
    from scott.data.attributes import VOCAB

    a, w = ATTRIBUTE_NAMES.index(attribute), ATTRIBUTE_NAMES.index(within)
    out: dict[str, float] = {}
    for value_index, value in enumerate(VOCAB[within]):
        rows = (targets[:, w] == value_index) & (targets[:, a] >= 0)
        if rows.any():
            out[f"accuracy_{attribute}_on_{value}"] = float((predicted[rows, a] == targets[rows, a]).double().mean())
    return out
