"""A finite image set encoded once by a frozen VAE, which every latent-space trainer reads instead of the VAE.

It keeps each image's posterior mean and std (both times the VAE's scaling factor), so a step can draw
z0 = mean + std * noise as training on `latent_dist.sample()` would, plus the captions and whatever per-set tensors a
trainer adds (token ids, caption embeddings, foreground maps), in one file written atomically.

Two encodings, by suffix: the recipe's latents are .safetensors, the distiller's cache is .pt (torch.save, read with
weights_only). Both stay because the shipped model's bits were made through them: loading the same values through
the other reader changed later float results on this CPU (measured: the teacher and the student moved), and the
recipe must reproduce models/scott-tiny bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import save_file

from scott.atomic import atomic_path


@torch.no_grad()
def encode_posterior(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(posterior mean, posterior std) of images in [-1, 1], both times the scaling factor, float32."""
    dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    scale = float(vae.config.scaling_factor)
    return dist.mean.float() * scale, dist.std.float() * scale


@dataclass
class LatentCache:
    mean: torch.Tensor  # float32 (N, C, h, w), scaled
    std: torch.Tensor  # float32 (N, C, h, w), scaled
    captions: list[str]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # a trainer's own tensors, by name

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def z0(self, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Posterior samples mean + std * noise of items `indices`, the noise drawn from `generator`."""
        mean = self.mean[indices]
        return mean + self.std[indices] * torch.randn(mean.shape, generator=generator)

    def save(self, path: Path) -> None:
        """A .safetensors file (captions in its metadata) or a .pt file (torch.save), by the path's suffix."""
        path = Path(path)
        with atomic_path(path) as tmp:  # another rank or a resumed run never reads half a file
            if path.suffix == ".safetensors":
                tensors = {"mean": self.mean, "std": self.std} | {f"extra.{k}": v for k, v in self.extras.items()}
                metadata = {"captions": json.dumps(self.captions)}
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata)
            else:
                torch.save({"mean": self.mean, "std": self.std, "captions": self.captions, "extras": self.extras}, tmp)

    @classmethod
    def load(cls, path: Path) -> LatentCache:
        path = Path(path)
        if path.suffix != ".safetensors":
            state = torch.load(path, weights_only=True)  # tensors, strings and dicts only: no code runs
            return cls(state["mean"], state["std"], state["captions"], state["extras"])
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
            captions = json.loads(f.metadata()["captions"])
        extras = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
        return cls(tensors["mean"], tensors["std"], captions, extras)
