"""The interface a pipeline runs its three networks through (engines/ implements it per runtime), and the eager one."""

from __future__ import annotations

from typing import Protocol

import torch

from scott.decoder import latent_scaling
from scott.models import ModelBundle
from scott.precision import Precision


class DiffusionBackend(Protocol):
    """Text encoder, UNet and VAE decoder of one model on one device (torch, ONNX Runtime, OpenVINO, TensorRT)."""

    name: str
    device: torch.device
    precision: str  # a Precision (f32 | bf16 | f16) the networks compute in; TensorRT may add "f16, vae f32"
    # Compiles or captures its work per input shape (CUDA graphs, static-shape compilation): a server warms every
    # batch size up front so no live request pays for it.
    per_shape: bool

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


class ModuleBackend:
    """A ModelBundle's own torch modules, called eagerly: the reference every runtime is compared with, and the
    backend the recipe samples its teacher through. engines.torch_backend adds CUDA graphs on top."""

    name = "torch"
    per_shape = False

    def __init__(self, bundle: ModelBundle, device: torch.device | str = "cpu") -> None:
        # Load the bundle in the dtype wanted (load_model(dtype=...)): casting here would skip diffusers'
        # keep-in-fp32 rules for modules that need them.
        self.device = torch.device(device)
        self.dtype = bundle.unet.dtype
        self.text_encoder = bundle.text_encoder.to(device=self.device).eval()
        self.unet = bundle.unet.to(device=self.device).eval()
        self.vae = bundle.decoder.to(device=self.device).eval()  # the full VAE or a tiny decoder: same decode()
        self.vae_scaling, self.vae_shift = latent_scaling(self.vae.config)
        # What the public methods call; a subclass may wrap them (CUDA graphs).
        self._text_call = self._text_forward
        self._unet_call = self._unet_forward
        self._vae_call = self._vae_forward

    @property
    def precision(self) -> Precision:
        return Precision.of_dtype(self.dtype)

    def _text_forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids).last_hidden_state.to(torch.float32)

    def _unet_forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, cond: torch.Tensor | None
    ) -> torch.Tensor:
        return self.unet(latents, timesteps, encoder_hidden_states=text, timestep_cond=cond).sample.to(torch.float32)

    def _vae_forward(self, scaled_latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(scaled_latents).sample.to(torch.float32)

    @torch.inference_mode()
    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._text_call(input_ids.to(self.device))

    @torch.inference_mode()
    def predict(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text_embeddings: torch.Tensor,
        timestep_cond: torch.Tensor | None,
    ) -> torch.Tensor:
        return self._unet_call(
            latents.to(self.device, self.dtype),
            timesteps.to(self.device),
            text_embeddings.to(self.device, self.dtype),
            None if timestep_cond is None else timestep_cond.to(self.device, self.dtype),
        )

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        scaled = latents.to(self.device) / self.vae_scaling + self.vae_shift  # in fp32, then cast
        return self._vae_call(scaled.to(self.dtype))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
