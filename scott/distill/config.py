"""Every knob of a SCott distillation run, in one dataclass that config files and flags both fill.

SCott (Liu et al., AAAI 2025, arXiv 2403.01505) and vanilla consistency distillation (LCM, Luo et al.
2023, arXiv 2310.04378) are the same trainer: LCM's CD is `eta = 0, substeps = 1, adv_weight = 0`. Each method the
paper compares is a file under configs/distill/methods/, layered over a scale file (configs/distill/tiny.toml).

Grid and skip. t_n is drawn from the schedule's training grid (NoiseSchedule.training_grid: with
num_grid_steps = 50 on 1000 timesteps, t = 19, 39, ..., 999, spacing 20), the same grid the
few-step sampler takes its timesteps from. `skip` (the paper's k) is counted in train timesteps, so
t_m = t_n - skip. The default skip equals the grid spacing (20, LCM's skipping step): t_m is then
the previous grid point, every timestep the EMA target is evaluated at is one the student trains
at, and the consistency chain from 999 links grid points down to the clean boundary. The paper's
k = 24 (h = 3 sub-steps of 8 timesteps) puts t_m off the grid (e.g. 975): allowed, but the target
then relies on the timestep embedding interpolating between trained timesteps. `substeps` (h)
split t_n -> t_m into h DDIM-eta steps at integer timesteps t_n - round(j * skip / h).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from scott.distill.noise_strength import ETA_REFERENCES, EtaReference

Distance = Literal["huber", "l2"]
MixedPrecision = Literal["no", "fp16", "bf16"]


@dataclass
class DistillConfig:
    """A distillation run. Paths are required; everything else has the paper's (or LCM's) default."""

    teacher: Path | None = None  # diffusers-format folder: tokenizer, text_encoder, unet, vae, scheduler
    data: str = "procedural:10000"  # procedural[:N] | folder of images + .txt | webdataset tar shards
    out: Path | None = None  # the student model folder (diffusers format)
    work_dir: Path | None = None  # checkpoints, latent cache, log.jsonl; default <out>/train

    # -- the method ------------------------------------------------------------------------------
    eta: float = 0.3  # DDIM-eta noise strength of the teacher's SDE solver; 0 = ODE (vanilla CD)
    # "sd15": eta means what it means on SD-1.5's schedule (the paper's teacher): each link's eta is rescaled to
    # inject the same share of fresh noise (scott/distill/noise_strength.py). "none": eta as is, on any schedule.
    eta_reference: EtaReference = "sd15"
    substeps: int = 3  # h: teacher solver sub-steps from t_n to t_m
    skip: int = 20  # k: t_m = t_n - skip, in train timesteps (see the module docstring)
    num_grid_steps: int = 50  # the training grid (the scheduler's original_inference_steps)
    timestep_scaling: float = 10.0  # LCM boundary condition c_skip/c_out at t * scaling
    w_min: float = 3.0  # guidance scale range (diffusers convention: uncond + w (cond - uncond))
    w_max: float = 15.0  # LCM's omega in [2, 14] is w - 1 in this convention
    guidance_embed_dim: int = 256  # time_cond_proj_dim added to a teacher UNet that has none
    ema_decay: float = 0.95  # theta^- = EMA of theta (LCM)
    distance: Distance = "huber"
    huber_c: float = 0.001

    # -- adversarial loss ------------------------------------------------------------------------
    adv_weight: float = 0.4  # lambda_adv; 0 turns the discriminator off
    disc_lr: float = 2e-5
    disc_lora_rank: int = 4
    disc_head_channels: int = 128

    # -- optimisation ----------------------------------------------------------------------------
    lr: float = 8e-6  # student (SD-1.5 scale; small models want ~1e-4, see configs/distill/)
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    batch_size: int = 32  # per process
    steps: int = 1000
    seed: int = 0
    mixed_precision: MixedPrecision = "no"
    gradient_checkpointing: bool = False
    overfit: bool = False  # reuse step 0's batch, timesteps and noise every step: checks that optimisation can fit
    cpu_threads: int = 0  # torch intra-op threads per process; 0 keeps torch's default (1 beats 2 on a busy CPU)

    # -- bookkeeping -----------------------------------------------------------------------------
    checkpoint_every: int = 500  # 0: only the final model
    resume: bool = True  # continue from the newest checkpoint under out/checkpoints
    log_every: int = 1
    progress: bool = True  # rich progress bar on the main process
    extras: dict[str, Any] = field(default_factory=dict)  # free-form notes carried into the log header

    def __post_init__(self) -> None:
        if self.teacher is not None:
            self.teacher = Path(self.teacher)
        if self.out is not None:
            self.out = Path(self.out)
        if self.work_dir is not None:
            self.work_dir = Path(self.work_dir)
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.eta < 0:
            problems.append(f"eta must be >= 0, got {self.eta}")
        if self.eta_reference not in ETA_REFERENCES:
            problems.append(f"eta_reference must be one of {', '.join(ETA_REFERENCES)}, got {self.eta_reference!r}")
        if self.substeps < 1:
            problems.append(f"substeps must be >= 1, got {self.substeps}")
        if self.skip < 1:
            problems.append(f"skip must be >= 1, got {self.skip}")
        if self.substeps > self.skip:
            problems.append(f"substeps ({self.substeps}) cannot exceed skip ({self.skip}): sub-steps are whole steps")
        if not 1.0 <= self.w_min <= self.w_max:
            problems.append(f"need 1 <= w_min <= w_max, got [{self.w_min}, {self.w_max}]")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.distance not in ("huber", "l2"):
            problems.append(f"distance must be 'huber' or 'l2', got {self.distance!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            problems.append(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.adv_weight < 0:
            problems.append(f"adv_weight must be >= 0, got {self.adv_weight}")
        if self.batch_size < 1 or self.steps < 0:
            problems.append("batch_size must be >= 1 and steps >= 0")
        if problems:
            raise ValueError("invalid distillation config: " + "; ".join(problems))

    def require_paths(self) -> tuple[Path, Path]:
        if self.teacher is None or self.out is None:
            raise ValueError("a distillation run needs both teacher and out")
        return Path(self.teacher), Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(DistillConfig))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML file of DistillConfig fields (the format of every config here; unknown keys are an error)."""
    path = Path(path)
    if path.suffix != ".toml":
        raise ValueError(f"config file must be .toml, got {path.name}")
    values = tomllib.loads(path.read_text())
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"{path}: unknown config fields {unknown}; known: {', '.join(FIELD_NAMES)}")
    return values


def load_config(path: str | Path | list[str | Path] | None = None, **overrides: Any) -> DistillConfig:
    """Defaults, then the config file(s) in order (a method file over a scale file: configs/distill/methods/ over
    configs/distill/tiny.toml), then overrides (flags); an override of None means 'not given'."""
    paths = [] if path is None else [path] if isinstance(path, str | Path) else list(path)
    values: dict[str, Any] = {}
    for each in paths:
        values.update(read_config_file(each))
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise ValueError(f"unknown config fields {unknown}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DistillConfig(**values)
