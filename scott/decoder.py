"""Which decoder turns latents into pixels: the model's full VAE decoder, or a tiny one (diffusers' AutoencoderTiny).

A tiny decoder is the model folder's `vae_tiny/` (`tiny`) or any AutoencoderTiny folder (e.g. TAESD for SD-1.5
latents). Latents reach it as diffusers' pipelines hand them to any VAE: `latents / scaling_factor + shift_factor`
from its own config (TAESD's scaling_factor is 1.0: it decodes the diffusion latents as they are).
Only the decoder half is used: a tiny folder's encoder, if any, is never run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderTiny

FULL, TINY = "full", "tiny"
TINY_SUBFOLDER = "vae_tiny"


class DecoderMismatch(ValueError):
    """A tiny decoder that cannot decode this model's latents (channels or spatial factor differ)."""


@dataclass(frozen=True)
class DecoderChoice:
    """The decoder a pipeline serves: kind full (the model's vae/) or tiny, with the AutoencoderTiny folder."""

    kind: str
    path: Path | None = None

    @property
    def is_tiny(self) -> bool:
        return self.kind == TINY

    def fingerprint(self) -> str | None:
        """sha256 over the tiny folder's files (None for the full decoder: the model's fingerprint covers vae/)."""
        if self.path is None:
            return None
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(self.path)).encode() + b"\0")
            with file.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
        return digest.hexdigest()


FULL_DECODER = DecoderChoice(FULL)

# AutoencoderTiny's constructor defaults: what a config.json leaves out means these (no model is built to read them).
_TINY_DEFAULTS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(AutoencoderTiny.__init__).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}


def resolve_decoder(model_dir: str | Path, spec: str | Path | None) -> DecoderChoice:
    """`full` (or None), `tiny` (the model folder's vae_tiny/) or the path of an AutoencoderTiny folder; a tiny
    decoder that does not fit the model's VAE raises DecoderMismatch here, from the configs, before any work."""
    if spec is None or str(spec) == FULL:
        return FULL_DECODER
    model_dir = Path(model_dir)
    if str(spec) == TINY:
        path = model_dir / TINY_SUBFOLDER
        if not path.is_dir():
            raise FileNotFoundError(
                f"--decoder tiny: the model folder {model_dir.name} has no {TINY_SUBFOLDER}/ "
                "(an AutoencoderTiny folder); pass --decoder DIR for one elsewhere"
            )
    else:
        path = Path(spec)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"--decoder {path.name}: not a diffusers model folder (no config.json)")
    config = json.loads(config_file.read_text())
    if config.get("_class_name") != "AutoencoderTiny":
        found = config.get("_class_name")
        raise DecoderMismatch(f"--decoder {path.name}: an AutoencoderTiny folder is needed, this one holds {found}")
    vae_config = model_dir / "vae" / "config.json"
    if vae_config.is_file():  # else the model's own loading says what is missing
        check_fits({**_TINY_DEFAULTS, **config}, json.loads(vae_config.read_text()))
    return DecoderChoice(TINY, path)


def latent_scaling(config: Any) -> tuple[float, float]:
    """(scaling_factor, shift_factor) of a VAE or tiny decoder config: a decoder takes latents / scaling_factor +
    shift_factor, as diffusers' pipelines hand them to it (and an encoder's latents are (z - shift) * scaling)."""
    shift = config.get("shift_factor")
    return float(config["scaling_factor"]), float(shift) if shift is not None else 0.0


def spatial_factor(config: Any) -> int:
    """How many pixels one latent cell becomes along a side, for an AutoencoderKL or AutoencoderTiny config."""
    if "decoder_block_out_channels" in config:  # AutoencoderTiny: one upsampling between decoder stages
        return int(config["upsampling_scaling_factor"]) ** (len(config["decoder_block_out_channels"]) - 1)
    return 2 ** (len(config["block_out_channels"]) - 1)


def check_fits(tiny: Any, vae: Any) -> None:
    """Raise DecoderMismatch unless the tiny decoder takes the VAE's latents and makes images of the same size.

    tiny, vae: their configs (a module's .config or the config.json as a dict)."""
    problems = []
    if tiny["latent_channels"] != vae["latent_channels"]:
        problems.append(f"{tiny['latent_channels']} latent channels, the model has {vae['latent_channels']}")
    if spatial_factor(tiny) != spatial_factor(vae):
        problems.append(f"upsamples {spatial_factor(tiny)}x, the model's VAE {spatial_factor(vae)}x")
    if tiny["out_channels"] != 3:
        problems.append(f"makes {tiny['out_channels']}-channel images, not RGB")
    if problems:
        raise DecoderMismatch("the tiny decoder does not fit this model: " + "; ".join(problems))


# AutoencoderTiny always builds an encoder; these decoders are used alone, so theirs is the smallest (never run).
SMALLEST_ENCODER: dict[str, Any] = {"encoder_block_out_channels": (8,), "num_encoder_blocks": (1,)}


def build_tiny_decoder(vae: AutoencoderKL, arch: dict[str, Any], seed: int = 0) -> AutoencoderTiny:
    """A randomly initialised AutoencoderTiny decoder for the VAE's latents, `arch` (its config fields) over the
    smallest encoder; checked to fit."""
    torch.manual_seed(seed)
    config = {**SMALLEST_ENCODER, "latent_channels": int(vae.config.latent_channels), **arch}
    tiny = AutoencoderTiny.from_config(config)
    check_fits(tiny.config, vae.config)
    return tiny.eval()


def load_tiny_decoder(choice: DecoderChoice, vae: AutoencoderKL, dtype: torch.dtype) -> AutoencoderTiny:
    """The AutoencoderTiny of a tiny choice (from local disk), checked against the model's VAE."""
    if choice.path is None:
        raise ValueError("the full decoder has no tiny folder to load")
    tiny = AutoencoderTiny.from_pretrained(str(choice.path), torch_dtype=dtype, local_files_only=True)
    check_fits(tiny.config, vae.config)
    return tiny.eval().requires_grad_(False)
