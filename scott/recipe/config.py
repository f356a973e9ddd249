"""Every knob of the embedded-model recipe, one dataclass per stage, filled from a TOML file (configs/recipe/*.toml).

A stage's budget is its number of optimizer steps; the measured seconds per step are printed and logged, so a
budget in minutes is steps x s/step on the machine at hand (see configs/recipe/embedded.toml for the measurements).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class VaeConfig:
    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decay to lr * this at the last step
    weight_decay: float = 0.0
    l2_weight: float = 1.0  # loss = L1 + l2_weight * L2 + edge_weight * edge + kl_weight * KL
    edge_weight: float = 0.5  # L1 between image gradients: keeps the shapes' outlines sharp
    kl_weight: float = 1e-4  # per latent element; small: the measured scaling factor sets the latents' scale
    # Extra weight on pixels unlike the image's border colour: a small shape is ~1% of the pixels, so with a plain
    # mean the loss is nearly all background and shape and colour are learned last (0 = plain mean).
    foreground_weight: float = 0.0
    # EQ-VAE's scale term: + weight * (L1 + l2_weight * L2) of decode(downscale(z)) against downscale(image), so
    # that a latent's low frequencies alone draw the image (0 = off).
    equivariance_weight: float = 0.0
    equivariance_scale: float = 0.5  # 16x16 latents -> 8x8, decoded to 32x32 against the image resized to 32x32
    max_grad_norm: float = 1.0
    checkpoint_every: int = 50
    scale_samples: int = 512  # images whose posterior means set the scaling factor (latents of ~unit std)
    eval_samples: int = 512  # held-out (val split) images for PSNR and classifier accuracy on reconstructions
    # AutoencoderKL config fields over the preset's, e.g. {norm_num_groups = 8}: with the preset's 32 groups on
    # 32 channels, GroupNorm is InstanceNorm, which removes an image's per-channel mean, i.e. a flat background's
    # colour, before the decoder's last conv (see scott/recipe/README.md for the measured effect).
    arch: dict[str, Any] = field(default_factory=dict)


@dataclass
class LatentsConfig:
    count: int = 10_000  # training images encoded once (train split, the data's TRAIN_CAPTIONS policy)
    batch_size: int = 64


@dataclass
class TeacherConfig:
    steps: int = 900
    batch_size: int = 32
    lr: float = 5e-4  # UNet and text encoder (both trained from scratch)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    caption_dropout: float = 0.1  # captions replaced by "" so classifier-free guidance has an unconditional model
    ema_decay: float = 0.995  # with the warm-up min(decay, (1 + step) / (10 + step))
    sample_posterior: bool = True  # z0 = mean + std * noise (as the VAE decoder was trained), else the mean
    # Extra loss weight on latent cells covered by the shape (by the fraction covered): with a plain mean the loss is
    # nearly all background, and the text encoder learned colours but not shape or position words (measured).
    foreground_weight: float = 0.0
    # The text encoder learns at lr * text_lr_scale; 0 keeps it frozen at its random init. Trained jointly (1.0),
    # it erased the position words the UNet could not use yet, and position stayed at chance (measured).
    text_lr_scale: float = 1.0
    # Token embeddings are scaled by this at init, so a word outweighs CLIP's position embedding in the states.
    token_embedding_scale: float = 1.0
    checkpoint_every: int = 100
    eval_prompts: int = 48  # held-out full captions
    eval_per_prompt: int = 4
    eval_steps: tuple[int, ...] = (1, 2, 4, 25)
    eval_guidance: float = 4.0
    # UNet2DConditionModel config fields over the preset's, e.g. {block_out_channels = [32, 64, 128]}
    # (channels and sample_size always follow the VAE's latents)
    arch: dict[str, Any] = field(default_factory=dict)


@dataclass
class DistillStageConfig:
    """Knobs passed to scott.distill's trainer (its own DistillConfig fields), plus the data spec."""

    enabled: bool = True
    data: str = "procedural:10000"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TinyDecoderConfig:
    """An AutoencoderTiny decoder distilled from the model's VAE decoder (scott/recipe/tiny_decoder.py)."""

    enabled: bool = True
    steps: int = 1500
    batch_size: int = 32  # latents per step, drawn from the pool
    # Latents made once, with the full decoder's images of them (decoding each step's batch anew cost 3x the step):
    # posterior samples of training images, and the student's own latents for training captions.
    pool_size: int = 4096
    student_fraction: float = 0.5  # of the pool: latents the student samples (not posterior samples)
    student_steps: tuple[int, ...] = (1, 2, 4)  # sampler steps of the student's latents, in equal parts
    guidance_range: tuple[float, float] = (2.0, 10.0)  # the student's guidance scale, drawn uniformly
    lr: float = 1e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    max_grad_norm: float = 1.0
    l2_weight: float = 1.0  # loss = L1 + l2_weight * L2 + edge_weight * edge, against the full decoder's image
    edge_weight: float = 0.5
    checkpoint_every: int = 250
    eval_samples: int = 256  # held-out (val split) images, and as many student samples of held-out prompts
    # AutoencoderTiny config fields (latent_channels and the upsampling must match the model's VAE)
    arch: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecipeConfig:
    seed: int = 0
    preset: str = "tiny"
    threads: int = 2
    vae: VaeConfig = field(default_factory=VaeConfig)
    latents: LatentsConfig = field(default_factory=LatentsConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillStageConfig = field(default_factory=DistillStageConfig)
    tiny_decoder: TinyDecoderConfig = field(default_factory=TinyDecoderConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {
    "vae": VaeConfig,
    "latents": LatentsConfig,
    "teacher": TeacherConfig,
    "distill": DistillStageConfig,
    "tiny_decoder": TinyDecoderConfig,
}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; known: {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)


def config_from_dict(values: dict[str, Any]) -> RecipeConfig:
    """A RecipeConfig from nested dicts (unknown keys are an error, not a silent no-op)."""
    top = {k: v for k, v in values.items() if k not in _SECTIONS}
    sections = {k: _build(cls, dict(values.get(k, {})), f"[{k}]") for k, cls in _SECTIONS.items()}
    return _build(RecipeConfig, {**top, **sections}, "recipe")


def load_config(path: str | Path | None) -> RecipeConfig:
    if path is None:
        return RecipeConfig()
    return config_from_dict(tomllib.loads(Path(path).read_text()))
