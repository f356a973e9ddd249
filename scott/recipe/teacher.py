"""Stage 3: the teacher. A CLIP text encoder and a UNet (the preset's architecture, random init) trained jointly
under the v-prediction diffusion loss on the zero-terminal-SNR schedule, over the cached latents.

- The UNet has no guidance embedding (time_cond_proj_dim=None): the teacher does real classifier-free guidance,
  and scott.distill adds the embedding to the student it initialises from this UNet.
- Captions are dropped to "" with probability caption_dropout, so one model is both conditional and unconditional.
- Timesteps are uniform over all 1000, t = 999 (pure noise, zero SNR) included: that is where a few-step sampler
  starts, and where the background colour is decided.
- An EMA of both networks is what gets saved.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from scott.models import PRESETS, ModelBundle, save_model
from scott.recipe.config import RecipeConfig
from scott.recipe.latents import load_latents
from scott.recipe.loop import Schedule, Trainable, train
from scott.recipe.stage import StageDir
from scott.recipe.vae import vae_dir
from scott.schedule import NoiseSchedule
from scott.tokenizer import tokenize
from scott.train.latent_cache import LatentCache
from scott.train.log import say

STAGE = "teacher"


def build_teacher_networks(
    preset: str,
    seed: int,
    latent_channels: int | None = None,
    latent_size: int | None = None,
    arch: dict[str, Any] | None = None,
    token_embedding_scale: float = 1.0,
) -> tuple[CLIPTextModel, UNet2DConditionModel]:
    """The preset's text encoder and UNet (no guidance embedding), `arch` fields over the UNet's, sized to the
    VAE's latents (channels and side): the saved config then gives the serving pipeline its default image size.
    The text encoder's token embeddings are multiplied by token_embedding_scale."""
    spec = PRESETS[preset]
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**spec["text"]))
    with torch.no_grad():
        text_encoder.get_input_embeddings().weight.mul_(token_embedding_scale)
    unet_config = {**spec["unet"], **(arch or {}), "time_cond_proj_dim": None}
    if latent_channels:
        unet_config.update(in_channels=latent_channels, out_channels=latent_channels)
    if latent_size:
        unet_config["sample_size"] = latent_size
    return text_encoder, UNet2DConditionModel.from_config(unet_config)


def diffusion_loss(
    text_encoder: CLIPTextModel,
    unet: UNet2DConditionModel,
    schedule: NoiseSchedule,
    z0: torch.Tensor,
    input_ids: torch.Tensor,
    generator: torch.Generator,
    weight: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """MSE between the UNet's output and the schedule's target (v for v-prediction) at uniform timesteps,
    weighted per latent cell by `weight` (broadcast over channels)."""
    t = torch.randint(0, schedule.num_train_timesteps, (z0.shape[0],), generator=generator)
    noise = torch.randn(z0.shape, generator=generator)
    z_t = schedule.add_noise(z0, noise, t)
    pred = unet(z_t, t, text_encoder(input_ids)[0]).sample
    return ((pred - schedule.target_from(z0, noise, t)).pow(2) * weight).mean()


def teacher_dir(run_dir: Path) -> Path:
    return Path(run_dir) / STAGE / "model"


def make_step_fn(
    text_encoder: CLIPTextModel,
    unet: UNet2DConditionModel,
    schedule: NoiseSchedule,
    data: LatentCache,
    empty_ids: torch.Tensor,
    cfg: RecipeConfig,
):
    tc = cfg.teacher

    input_ids, foreground = data.extras["input_ids"].long(), data.extras["foreground"].float()

    def step_fn(step: int, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        index = torch.randint(0, len(data), (tc.batch_size,), generator=generator)
        z0 = data.z0(index, generator) if tc.sample_posterior else data.mean[index]
        ids = input_ids[index].clone()
        drop = torch.rand(tc.batch_size, generator=generator) < tc.caption_dropout
        ids[drop] = empty_ids
        weight = 1.0 + tc.foreground_weight * foreground[index] if tc.foreground_weight else 1.0
        loss = diffusion_loss(text_encoder, unet, schedule, z0, ids, generator, weight)
        return loss, {"dropped": float(drop.float().mean())}

    return step_fn


def run_teacher_stage(
    run_dir: Path, cfg: RecipeConfig, tokenizer: CLIPTokenizer, stop_after: int | None = None
) -> bool:
    """Train (or resume) the teacher; on completion save the EMA model folder and evaluate it."""
    tc = cfg.teacher
    latents_state = json.loads((Path(run_dir) / "latents" / "state.json").read_text())
    stage = StageDir(
        run_dir, STAGE, {"preset": cfg.preset, "seed": cfg.seed, "latents": latents_state["config"], **asdict(tc)}
    )
    if stage.complete:
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    if not stage.state().get("trained"):
        data = load_latents(run_dir)
        text_encoder, unet = build_teacher_networks(
            cfg.preset,
            cfg.seed,
            latent_channels=data.mean.shape[1],
            latent_size=data.mean.shape[-1],
            arch=tc.arch,
            token_embedding_scale=tc.token_embedding_scale,
        )
        text_encoder.requires_grad_(tc.text_lr_scale > 0)
        ema = {"text_encoder": copy.deepcopy(text_encoder), "unet": copy.deepcopy(unet)}
        groups = [{"params": list(unet.parameters())}]
        if tc.text_lr_scale > 0:
            groups.append({"params": list(text_encoder.parameters()), "lr_scale": tc.text_lr_scale})
        optimizer = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
        trainable = Trainable({"text_encoder": text_encoder, "unet": unet}, optimizer, ema)
        schedule = NoiseSchedule.from_config(PRESETS[cfg.preset]["scheduler"])
        empty_ids = tokenize(tokenizer, [""])[0]
        step_fn = make_step_fn(text_encoder, unet, schedule, data, empty_ids, cfg)
        plan = Schedule(
            tc.steps, tc.lr, tc.warmup_steps, tc.min_lr_ratio, tc.max_grad_norm, tc.checkpoint_every, tc.ema_decay
        )
        if not train(stage, trainable, plan, step_fn, cfg.seed, stop_after):
            return False
        bundle = ModelBundle(
            path=None,
            tokenizer=tokenizer,
            text_encoder=ema["text_encoder"].eval(),
            unet=ema["unet"].eval(),
            vae=AutoencoderKL.from_pretrained(str(vae_dir(run_dir)), local_files_only=True).eval(),
            scheduler_config=dict(PRESETS[cfg.preset]["scheduler"]),
        )
        save_model(bundle, teacher_dir(run_dir))
        stage.update(trained=True)  # evaluation may still be interrupted; training is not redone
    metrics = evaluate_teacher(teacher_dir(run_dir), stage.path, tc) if tc.eval_prompts > 0 else {}
    stage.mark_complete(metrics=metrics)
    return True


def save_grid(images: np.ndarray, rows: int, path: Path) -> Path:
    """uint8 (B, H, W, 3), B = rows * cols, as one PNG (row-major)."""
    b, h, w, _ = images.shape
    cols = b // rows
    grid = images[: rows * cols].reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    Image.fromarray(grid).save(path)
    return path


def evaluate_teacher(model_dir: Path, out_dir: Path, tc) -> dict[str, dict[str, float]]:
    """Prompt accuracy etc. (scott.eval.evaluate) of DDIM samples with CFG at each of tc.eval_steps, plus grids."""
    from scott.eval.evaluate import evaluate
    from scott.eval.generators import teacher_generate_fn
    from scott.eval.prompts import eval_prompts
    from scott.models import load_model

    try:
        from scott.eval.classifier import load_classifier

        classifier = load_classifier()
    except FileNotFoundError as err:
        say(STAGE, f"no classifier, skipping evaluation: {err}")
        return {}
    bundle = load_model(model_dir)
    prompts = eval_prompts(tc.eval_prompts, "heldout")
    results: dict[str, dict[str, float]] = {}
    for steps in tc.eval_steps:
        generate = teacher_generate_fn(bundle, steps, tc.eval_guidance)
        metrics = evaluate(generate, prompts, tc.eval_per_prompt, classifier, real_floor=False)
        results[f"ddim{steps}"] = metrics
        rows = prompts[:8]  # one row per prompt, seeds 0-7 across
        grid = generate([p for p in rows for _ in range(8)], list(range(8)) * len(rows))
        save_grid(grid, len(rows), out_dir / f"samples-ddim{steps}.png")
        say(
            STAGE,
            f"DDIM {steps} steps, CFG {tc.eval_guidance}: prompt accuracy {metrics['prompt_accuracy']:.3f} "
            + " ".join(f"{k[9:]} {v:.2f}" for k, v in metrics.items() if k.startswith("accuracy_"))
            + f", FID {metrics['fid']:.2f}",
        )
    (out_dir / "prompts-grid.txt").write_text("\n".join(prompts[:8]) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
