"""Stage 1: train the preset's AutoencoderKL on procedural images, measure its latent scaling factor, score it.

Loss: L1 + L2 reconstruction, an L1 on image gradients (sharp outlines for small shapes), and a small KL per
latent element. The decoder trains on posterior samples, the way the teacher's latents are drawn later.
Optionally (equivariance_weight > 0) EQ-VAE's scale term (Kouzelis et al. 2025): the decoded downscaled latent must
be the downscaled image, which moves the content out of the latents' highest spatial frequencies, the band a
diffusion model fits last (the shipped VAE keeps a shape's identity there; scott/recipe/README.md).
The scaling factor is 1 / std of the posterior means (SD's recipe: latents of ~unit std for the diffusion model).
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from scott.data.attributes import ATTRIBUTE_NAMES
from scott.data.dataset import make_batch
from scott.eval.psnr import psnr
from scott.images import images_to_tensor, to_uint8
from scott.models import PRESETS
from scott.recipe.config import RecipeConfig
from scott.recipe.loop import Schedule, Trainable, train
from scott.recipe.stage import StageDir
from scott.train.log import say

STAGE = "vae"


def build_vae(preset: str, seed: int, arch: dict | None = None) -> AutoencoderKL:
    """The preset's VAE, with `arch` config fields over it (the saved folder's config records them)."""
    torch.manual_seed(seed)
    return AutoencoderKL.from_config({**PRESETS[preset]["vae"], **(arch or {})})


def _edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def edge_l1(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical image gradients of two batches: keeps small shapes' outlines sharp."""
    return sum((a - b).abs().mean() for a, b in zip(_edges(images), _edges(target), strict=True))


def foreground_mask(images: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """(B, 1, H, W) 1.0 where a pixel differs from its image's border median (the flat background) in any channel."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., 0], images[..., -1]], dim=-1)
    background = border.median(dim=-1).values[..., None, None]
    return ((images - background).abs().amax(dim=1, keepdim=True) > threshold).to(images.dtype)


def downscale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Antialiased bilinear resize by `scale` (< 1), the same operator for latents and images."""
    return F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)


def _pixel_losses(recon: torch.Tensor, images: torch.Tensor, foreground_weight: float) -> tuple[torch.Tensor, ...]:
    weight = 1.0 + foreground_weight * foreground_mask(images) if foreground_weight else 1.0
    return ((recon - images).abs() * weight).mean(), ((recon - images).pow(2) * weight).mean()


def vae_loss(
    vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator, cfg: RecipeConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    posterior = vae.encode(images).latent_dist
    z = posterior.sample(generator=generator)
    recon = vae.decode(z).sample
    v = cfg.vae
    l1, l2 = _pixel_losses(recon, images, v.foreground_weight)
    edge = edge_l1(recon, images)
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    loss = l1 + v.l2_weight * l2 + v.edge_weight * edge + v.kl_weight * kl
    logs = {"l1": l1.item(), "l2": l2.item(), "edge": float(edge.item()), "kl": kl.item()}
    if v.equivariance_weight:
        small = vae.decode(downscale(z, v.equivariance_scale)).sample
        eq_l1, eq_l2 = _pixel_losses(small, downscale(images, v.equivariance_scale), v.foreground_weight)
        loss = loss + v.equivariance_weight * (eq_l1 + v.l2_weight * eq_l2)
        logs["eq_l1"] = eq_l1.item()
    return loss, logs


@torch.no_grad()
def posterior_means(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    return torch.cat([vae.encode(x).latent_dist.mean for x in images.split(batch_size)])


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """uint8 (B, H, W, 3) reconstructions through the posterior mean, rounded as served images are."""
    out = []
    for x in images.split(batch_size):
        out.append(to_uint8(vae.decode(vae.encode(x).latent_dist.mean).sample))
    return np.concatenate(out)


def measure_scaling_factor(vae: AutoencoderKL, count: int, seed_offset: int = 10_000_000) -> float:
    """1 / std of posterior means over `count` training images (disjoint from the first training steps')."""
    images = make_batch("train", seed_offset, count).images
    return float(1.0 / posterior_means(vae, images).std())


@torch.no_grad()
def evaluate_vae(vae: AutoencoderKL, count: int) -> dict[str, float | None]:
    """PSNR of reconstructions of held-out (val split) images, and the attribute classifier's accuracy on them."""
    batch = make_batch("val", 0, count)
    recon = reconstruct(vae, batch.images)
    scores = psnr(recon, to_uint8(batch.images))
    out: dict[str, float | None] = {"psnr": float(scores.mean()), "psnr_min": float(scores.min())}
    try:
        from scott.eval.classifier import load_classifier

        classifier = load_classifier()
    except FileNotFoundError as err:
        say(STAGE, f"no classifier, skipping attribute accuracy: {err}")
        return out
    pred_recon, _ = classifier.predict(images_to_tensor(recon))
    pred_real, _ = classifier.predict(batch.images)
    for i, name in enumerate(ATTRIBUTE_NAMES):
        out[f"recon_accuracy_{name}"] = float((pred_recon[:, i] == batch.labels[:, i]).double().mean())
    out["recon_accuracy_all"] = float((pred_recon == batch.labels).all(dim=1).double().mean())
    out["real_accuracy_all"] = float((pred_real == batch.labels).all(dim=1).double().mean())
    return out


def vae_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STAGE / "model"


def run_vae_stage(run_dir: Path, cfg: RecipeConfig, stop_after: int | None = None) -> bool:
    """Train (or resume) the VAE; on completion save it with its scaling factor under <run>/vae/model."""
    v = cfg.vae
    stage = StageDir(run_dir, STAGE, {"preset": cfg.preset, "seed": cfg.seed, **asdict(v)})
    if stage.complete:
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    vae = build_vae(cfg.preset, cfg.seed, v.arch)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=v.lr, weight_decay=v.weight_decay)
    schedule = Schedule(v.steps, v.lr, v.warmup_steps, v.min_lr_ratio, v.max_grad_norm, v.checkpoint_every)

    def step_fn(step: int, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        images = make_batch("train", step * v.batch_size, v.batch_size).images
        return vae_loss(vae, images, generator, cfg)

    if not train(stage, Trainable({"vae": vae}, optimizer), schedule, step_fn, cfg.seed, stop_after):
        return False
    vae.eval()
    scale = measure_scaling_factor(vae, v.scale_samples)
    vae.register_to_config(scaling_factor=scale)
    metrics = evaluate_vae(vae, v.eval_samples)
    copy.deepcopy(vae).save_pretrained(str(vae_dir(run_dir)), safe_serialization=True)
    say(STAGE, f"scaling_factor {scale:.4f}; " + ", ".join(f"{k} {x:.4f}" for k, x in metrics.items()))
    stage.mark_complete(scaling_factor=scale, metrics=metrics)
    return True


def adopt_vae_stage(run_dir: Path, cfg: RecipeConfig, source: Path) -> bool:
    """Stage 1 from an already trained VAE folder (e.g. the shipped model's vae/) instead of training one: the
    teacher and student can be retrained on the committed VAE without its ~30 minutes. Scored like a trained one."""
    stage = StageDir(run_dir, STAGE, {"preset": cfg.preset, "seed": cfg.seed, "adopted": str(Path(source).resolve())})
    if stage.complete:
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    vae = AutoencoderKL.from_pretrained(str(source), torch_dtype=torch.float32, local_files_only=True).eval()
    metrics = evaluate_vae(vae, cfg.vae.eval_samples)
    vae.save_pretrained(str(vae_dir(run_dir)), safe_serialization=True)
    scale = float(vae.config.scaling_factor)
    say(
        STAGE, f"adopted {source}: scaling_factor {scale:.4f}; " + ", ".join(f"{k} {x:.4f}" for k, x in metrics.items())
    )
    stage.mark_complete(scaling_factor=scale, metrics=metrics)
    return True
