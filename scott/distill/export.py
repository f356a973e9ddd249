"""The distilled student as a diffusers-format folder that engines.load_pipeline serves unchanged."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from scott.distill.config import DistillConfig
from scott.models import ModelBundle, save_model
from scott.schedule import NoiseSchedule

# What defines the teacher's noise schedule; the student keeps it bit for bit.
_SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "rescale_betas_zero_snr",
)


def distill_schedule(teacher_scheduler: dict[str, Any], config: DistillConfig) -> NoiseSchedule:
    """The teacher's schedule with the run's grid and boundary scaling: what training and serving share."""
    return NoiseSchedule.from_config(student_scheduler_config(teacher_scheduler, config))


def student_scheduler_config(teacher_scheduler: dict[str, Any], config: DistillConfig) -> dict[str, Any]:
    """An LCMScheduler config: the teacher's betas, prediction type and zero-SNR flag, plus the distillation grid."""
    kept = {k: teacher_scheduler[k] for k in _SCHEDULE_KEYS if k in teacher_scheduler}
    return {
        "_class_name": "LCMScheduler",
        **kept,
        "original_inference_steps": config.num_grid_steps,
        "timestep_scaling": config.timestep_scaling,
        "set_alpha_to_one": True,
        "steps_offset": 1,
        "clip_sample": False,
        "timestep_spacing": "leading",
    }


def export_student(teacher: ModelBundle, student_unet: torch.nn.Module, config: DistillConfig, out: Path) -> Path:
    """Write teacher tokenizer/text encoder/VAE + the student UNet + the LCM scheduler config to `out` (fp16)."""
    unet = copy.deepcopy(student_unet).to("cpu", torch.float32).eval()
    bundle = ModelBundle(
        path=None,
        tokenizer=teacher.tokenizer,
        text_encoder=teacher.text_encoder,
        unet=unet,
        vae=teacher.vae,
        scheduler_config=student_scheduler_config(teacher.scheduler_config, config),
    )
    return save_model(bundle, out)
