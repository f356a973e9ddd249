"""The loop of the recipe's supervised stages (VAE, teacher): AdamW steps under a warm-up + cosine schedule, the
kit's EMA, step log and keyed generators, and checkpoints that resume bit-exactly."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import nn

from scott.recipe.stage import StageDir
from scott.train.checkpoints import Checkpoints
from scott.train.ema import ema_update, warmup_decay
from scott.train.log import RunLog, say
from scott.train.loop import run_steps
from scott.train.rng import keyed_generator

# step, generator -> (loss to minimise, scalars to log)
StepFn = Callable[[int, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class Schedule:
    steps: int
    lr: float
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    checkpoint_every: int = 100
    ema_decay: float | None = None

    def lr_at(self, step: int) -> float:
        """Linear warm-up, then cosine decay to lr * min_lr_ratio at the last step (step counts from 0)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def ema_decay_at(self, step: int) -> float:
        assert self.ema_decay is not None
        return warmup_decay(self.ema_decay, step)


@dataclass
class Trainable:
    modules: dict[str, nn.Module]
    optimizer: torch.optim.Optimizer
    ema: dict[str, nn.Module] = field(default_factory=dict)  # same keys as modules, when an EMA is kept

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]

    def update_ema(self, decay: float) -> None:
        for n, m in self.modules.items():
            ema_update(self.ema[n], m, decay)


def train(
    stage: StageDir,
    trainable: Trainable,
    schedule: Schedule,
    step_fn: StepFn,
    seed: int,
    stop_after: int | None = None,
) -> bool:
    """Run the stage's remaining steps (from its checkpoint, if any). Returns True once all steps are done.

    stop_after: leave after this many steps in this call, with a checkpoint (an interruption on purpose).
    """
    stage.update()  # records the config first: resuming this stage's checkpoint under another config is refused
    # The recipe's stages run where their data is (the CPU): accelerate keeps the checkpoints, not the devices.
    accelerator = Accelerator(device_placement=False)
    *_, optimizer = accelerator.prepare(*trainable.modules.values(), trainable.optimizer)
    accelerator.register_for_checkpointing(*trainable.ema.values())
    checkpoints = Checkpoints(stage.path / "checkpoints", keep=1)
    log = RunLog(stage.log_file, stage.name)
    start = checkpoints.resume(accelerator)
    if start:
        log.truncate(start)
        say(stage.name, f"resuming at step {start}/{schedule.steps}")
    end = schedule.steps if stop_after is None else min(schedule.steps, start + stop_after)
    params = trainable.parameters()
    for m in trainable.modules.values():
        m.train()

    def step(index: int) -> dict[str, float]:
        lr = schedule.lr_at(index)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        loss, scalars = step_fn(index, keyed_generator(seed, stage.name, index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, schedule.max_grad_norm))
        optimizer.step()
        if trainable.ema:
            trainable.update_ema(schedule.ema_decay_at(index))
        return {"loss": loss.item(), "lr": lr, "grad_norm": grad_norm} | scalars

    run_steps(
        step,
        start=start,
        end=end,
        total=schedule.steps,
        log=log,
        accelerator=accelerator,
        checkpoints=checkpoints,
        checkpoint_every=schedule.checkpoint_every,
    )
    if log.durations:
        say(stage.name, f"{len(log.durations)} steps this run, {log.seconds_per_step:.3f} s/step (first step excluded)")
    for m in trainable.modules.values():
        m.eval()
    return end == schedule.steps
