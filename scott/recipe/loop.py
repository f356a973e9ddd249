"""The loop of the recipe's supervised stages (VAE, teacher): AdamW steps under a warm-up + cosine schedule, the
kit's EMA, step log and keyed generators, and checkpoints that resume bit-exactly."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from scott.recipe.stage import StageDir
from scott.train.ema import ema_update, warmup_decay
from scott.train.log import RunLog, say
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

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"model.{n}.{k}": v for n, m in self.modules.items() for k, v in m.state_dict().items()}
        out.update({f"ema.{n}.{k}": v for n, m in self.ema.items() for k, v in m.state_dict().items()})
        for pid, state in self.optimizer.state_dict()["state"].items():
            out.update({f"optim.{pid}.{k}": v for k, v in state.items() if torch.is_tensor(v)})
        return out

    def param_groups(self) -> list[dict]:
        return self.optimizer.state_dict()["param_groups"]

    def load(self, tensors: dict[str, torch.Tensor], param_groups: list[dict]) -> None:
        for prefix, group in (("model", self.modules), ("ema", self.ema)):
            for n, m in group.items():
                head = f"{prefix}.{n}."
                m.load_state_dict({k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        self.optimizer.load_state_dict({"state": state, "param_groups": param_groups})

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
    start = 0
    log = RunLog(stage.log_file, stage.name)
    saved = stage.load_checkpoint()
    if saved is not None:
        start, tensors, state = saved
        trainable.load(tensors, state["param_groups"])
        log.truncate(start)
        say(stage.name, f"resuming at step {start}/{schedule.steps}")
    end = schedule.steps if stop_after is None else min(schedule.steps, start + stop_after)
    params = trainable.parameters()
    for m in trainable.modules.values():
        m.train()
    with log.bar(total=schedule.steps, start=start):
        for step in range(start, end):
            t0 = time.perf_counter()
            lr = schedule.lr_at(step)
            for group in trainable.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            loss, scalars = step_fn(step, keyed_generator(seed, stage.name, step))
            trainable.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, schedule.max_grad_norm))
            trainable.optimizer.step()
            if trainable.ema:
                trainable.update_ema(schedule.ema_decay_at(step))
            done = step + 1
            metrics = {"loss": loss.item(), "lr": lr, "grad_norm": grad_norm} | scalars
            log.step(done, metrics, time.perf_counter() - t0)
            if done == end or done % schedule.checkpoint_every == 0:
                extra = {"param_groups": trainable.param_groups(), "s_per_step": log.seconds_per_step}
                stage.save_checkpoint(done, trainable.tensors(), extra)
    if log.durations:
        say(stage.name, f"{len(log.durations)} steps this run, {log.seconds_per_step:.3f} s/step (first step excluded)")
    for m in trainable.modules.values():
        m.eval()
    return end == schedule.steps
