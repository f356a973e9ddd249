"""The interface a pipeline runs its three networks through; engines/ implements it per runtime."""

from __future__ import annotations

from typing import Protocol

import torch


class DiffusionBackend(Protocol):
    """Text encoder, UNet and VAE decoder of one model on one device (torch, ONNX Runtime, TensorRT)."""

    name: str
    device: torch.device

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, 77) token ids -> (B, 77, D) float32 hidden states (CLIP's last layer, as SD uses)."""
        ...

    def predict(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_embeddings: torch.Tensor,
        timestep_cond: torch.Tensor | None,
    ) -> torch.Tensor:
        """One UNet call: (B,C,h,w) latents at (B,) timesteps -> (B,C,h,w) float32 raw model output."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B,C,h,w) diffusion latents (unscaled by the VAE factor inside) -> (B,3,H,W) float32 in [-1, 1]."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work, so stage timings measure the work and not its launch."""
        ...
