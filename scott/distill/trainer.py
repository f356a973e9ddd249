"""The SCott distillation loop: one process or many (accelerate launch), CPU or GPU, resumable.

Per step (SCott, arXiv 2403.01505; the CD skeleton of LCM, arXiv 2310.04378):
1. z0 from the data, t_n on the training grid, w ~ U[w_min, w_max], z_{t_n} = add_noise(z0, eps, t_n).
2. Student: x_theta = f_theta(z_{t_n}, t_n, c, w).
3. Teacher: z_hat_{t_m} = h DDIM-eta sub-steps with CFG at w from t_n to t_m = t_n - k (no grad), at the link's eta
   (eta read on SD-1.5's schedule by default: scott/distill/noise_strength.py).
4. Target: f_{theta^-}(z_hat_{t_m}, t_m, c, w) with theta^- the EMA; t_m < 0 means z_hat is clean.
5. L = d(x_theta, target) + lambda_adv * hinge_G(D(add_noise(x_theta, eps', t'), t', c)); step the student.
6. Discriminator: hinge_D on real = add_noise(z0, eps', t') vs fake = the same with x_theta detached.
7. theta^- <- EMA(theta).
All randomness of step s comes from generators keyed by (seed, s, rank), drawn on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from scott.distill.config import DistillConfig
from scott.distill.data import parse_spec
from scott.distill.discriminator import UNetEncoderDiscriminator
from scott.distill.export import distill_schedule, export_student
from scott.distill.latents import CachedBatches, Encoders, StreamedBatches, build_cache, cache_path
from scott.distill.losses import consistency_distance, hinge_d_loss, hinge_g_loss
from scott.distill.noise_strength import reference_eta, reference_schedule
from scott.distill.student import build_student, consistency_fn, guidance_condition, target_fn
from scott.models import load_model
from scott.sampler import classifier_free_guidance, solve, substep_timesteps
from scott.schedule import NoiseSchedule
from scott.train.checkpoints import Checkpoints
from scott.train.ema import ema_update, make_ema
from scott.train.latent_cache import LatentCache
from scott.train.log import RunLog
from scott.train.loop import run_steps
from scott.train.rng import keyed_generator

_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class DistillResult:
    model_dir: Path  # the student folder (diffusers format)
    work_dir: Path  # checkpoints, latent cache, log.jsonl
    steps: int  # the step count reached
    seconds_per_step: float  # mean wall time of the steps this call ran, the first excluded (nan if none)
    last_loss: float


def work_dir_of(config: DistillConfig) -> Path:
    _, out = config.require_paths()
    return Path(config.work_dir) if config.work_dir is not None else out / "train"


def check_schedule(schedule: NoiseSchedule) -> None:
    """Refuse a teacher whose prediction type cannot give x0 at every timestep of its schedule."""
    if schedule.prediction_type == "epsilon" and float(schedule.alphas_cumprod[-1]) <= 0.0:
        raise ValueError(
            "an epsilon-prediction teacher on a zero-terminal-SNR schedule has no x0 at t = T-1; "
            "use v_prediction (or sample) with rescale_betas_zero_snr"
        )


def link_eta_table(config: DistillConfig, schedule: NoiseSchedule) -> torch.Tensor:
    """(T,) float32: the eta of the teacher's sub-steps on the link from each t_n, config.eta read on the config's
    reference schedule (scott/distill/noise_strength.py). Computed once: the links are fixed by skip and h."""
    t = torch.arange(schedule.num_train_timesteps)
    timesteps = substep_timesteps(t, config.skip, config.substeps)
    return reference_eta(schedule, timesteps, config.eta, reference_schedule(config.eta_reference)).float()


def distill(config: DistillConfig) -> DistillResult:
    """Run (or resume) a distillation and write the student folder to config.out."""
    previous_threads = torch.get_num_threads()
    if config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    try:
        return _distill(config)
    finally:
        torch.set_num_threads(previous_threads)


def _distill(config: DistillConfig) -> DistillResult:
    teacher_dir, out = config.require_paths()
    work = work_dir_of(config)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=_multi_cpu())
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    weight_dtype = _DTYPES[config.mixed_precision]
    set_seed(config.seed)  # model-side initialisation (LoRA, heads) is the same on every rank

    bundle = load_model(teacher_dir)
    schedule = distill_schedule(bundle.scheduler_config, config)
    check_schedule(schedule)
    student = build_student(bundle.unet, config.guidance_embed_dim)
    if config.gradient_checkpointing:
        student.enable_gradient_checkpointing()
    ema = make_ema(student).to(device)
    disc = (
        UNetEncoderDiscriminator(bundle.unet, config.disc_lora_rank, config.disc_head_channels)
        if config.adv_weight > 0
        else None
    )
    teacher = bundle.unet.to(device, weight_dtype).eval().requires_grad_(False)
    encoders = Encoders(bundle, device, weight_dtype)
    uncond = encoders.text([""])
    data = _make_batches(config, bundle, encoders, work, accelerator)

    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 1)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    student, opt, lr_sched = accelerator.prepare(student, opt, lr_sched)
    d_opt = None
    if disc is not None:
        d_params = [p for p in disc.parameters() if p.requires_grad]
        d_opt = torch.optim.AdamW(d_params, lr=config.disc_lr, weight_decay=0.0)
        disc, d_opt = accelerator.prepare(disc, d_opt)
    accelerator.register_for_checkpointing(ema)

    checkpoints = Checkpoints(work / "checkpoints")
    start = checkpoints.resume(accelerator) if config.resume else 0
    log = RunLog(work / "log.jsonl", "distill", enabled=accelerator.is_main_process, progress=config.progress)
    if start == 0:
        log.header(_run_header(config, student, disc, world))
    else:
        log.truncate(start)
    link_eta = link_eta_table(config, schedule)
    ctx = _StepContext(
        config, schedule, accelerator, student, ema, teacher, disc, opt, d_opt, lr_sched, uncond, link_eta
    )

    def step(index: int) -> dict[str, float]:
        key = 0 if config.overfit else index  # the step whose data and noise this step uses
        batch = data.batch(config.seed, key, rank, world, config.batch_size)
        metrics = _train_step(ctx, batch.latents.to(device), batch.text.to(device), key)
        return {**metrics, "lr": lr_sched.get_last_lr()[0]}

    last = run_steps(
        step,
        start=start,
        end=config.steps,
        total=config.steps,
        log=log,
        accelerator=accelerator,
        checkpoints=checkpoints,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
    ).get("loss", float("nan"))

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(student)
    _write_rank_summary(work, rank, world, config.steps, unwrapped, last)
    if accelerator.is_main_process:
        export_student(bundle, unwrapped, config, out)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    rate = log.seconds_per_step
    return DistillResult(model_dir=out, work_dir=work, steps=config.steps, seconds_per_step=rate, last_loss=last)


def _multi_cpu() -> bool:
    """Launched as several processes (torchrun / accelerate) on a host without CUDA: DDP over gloo on the CPU.

    accelerate only sets up MULTI_CPU when told `cpu=True`; without it the ranks would each train alone.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world > 1 and not torch.cuda.is_available()


# -- one step -------------------------------------------------------------------------------------------


@dataclass
class _StepContext:
    config: DistillConfig
    schedule: NoiseSchedule
    accelerator: Accelerator
    student: torch.nn.Module
    ema: torch.nn.Module
    teacher: torch.nn.Module
    disc: torch.nn.Module | None
    opt: Any
    d_opt: Any
    lr_sched: Any
    uncond: torch.Tensor
    link_eta: torch.Tensor  # (T,) the solver's eta for a link starting at t_n (link_eta_table)


def _train_step(ctx: _StepContext, z0: torch.Tensor, text: torch.Tensor, step: int) -> dict[str, float]:
    cfg, schedule, acc = ctx.config, ctx.schedule, ctx.accelerator
    device, batch = z0.device, z0.shape[0]
    g = keyed_generator(cfg.seed, step, acc.process_index, 2)
    grid = schedule.training_grid()

    # 1. timesteps, guidance scales and every noise of this step, drawn up front on the CPU
    t_n = grid[torch.randint(grid.numel(), (batch,), generator=g)].to(device)
    w = (cfg.w_min + (cfg.w_max - cfg.w_min) * torch.rand(batch, generator=g)).to(device)
    eps = torch.randn(z0.shape, generator=g).to(device)
    solver_noise = torch.randn((batch, cfg.substeps, *z0.shape[1:]), generator=g).to(device)
    t_adv = grid[torch.randint(grid.numel(), (batch,), generator=g)].to(device)
    adv_noise = torch.randn(z0.shape, generator=g).to(device)
    z_tn = schedule.add_noise(z0, eps, t_n)
    w_cond = guidance_condition(ctx.student, w)

    # 2. the student's consistency output
    with acc.autocast():
        pred = consistency_fn(ctx.student, schedule, z_tn, t_n, text, w_cond)

    # 3-4. the teacher's SDE solve and the EMA target
    with torch.no_grad(), acc.autocast():
        timesteps = substep_timesteps(t_n, cfg.skip, cfg.substeps)
        teacher = classifier_free_guidance(_unet_fn(ctx.teacher), text, ctx.uncond, w)
        eta = ctx.link_eta[t_n.cpu()].to(device)
        z_hat = solve(teacher, schedule, z_tn, timesteps, eta, solver_noise)
        target = target_fn(ctx.ema, schedule, z_hat, timesteps[:, -1], text, w_cond)

    # 5. consistency + generator loss, student update; D's grads from this pass are local and discarded
    loss_cd = consistency_distance(pred, target, cfg.distance, cfg.huber_c)
    loss_g = torch.zeros((), device=device)
    sync_off = acc.no_sync(ctx.disc) if ctx.disc is not None else nullcontext()
    with sync_off:
        if ctx.disc is not None:
            with acc.autocast():
                fake_t = schedule.add_noise(pred, adv_noise, t_adv)
                loss_g = hinge_g_loss(ctx.disc(fake_t, t_adv, text))
        loss = loss_cd + cfg.adv_weight * loss_g
        acc.backward(loss)
    if acc.sync_gradients:
        acc.clip_grad_norm_(ctx.student.parameters(), cfg.max_grad_norm)
    ctx.opt.step()
    ctx.lr_sched.step()
    ctx.opt.zero_grad(set_to_none=True)

    # 6. discriminator update on (real, fake) noised at the same t with the same noise
    loss_d = torch.zeros((), device=device)
    if ctx.disc is not None:
        ctx.d_opt.zero_grad(set_to_none=True)
        with acc.autocast():
            real_t = schedule.add_noise(z0, adv_noise, t_adv)
            fake_t = schedule.add_noise(pred.detach(), adv_noise, t_adv)
            logits = ctx.disc(torch.cat([real_t, fake_t]), torch.cat([t_adv, t_adv]), torch.cat([text, text]))
            loss_d = hinge_d_loss(*logits.chunk(2))
        acc.backward(loss_d)
        ctx.d_opt.step()
        ctx.d_opt.zero_grad(set_to_none=True)

    # 7. theta^- <- EMA(theta); every rank holds the same theta after the all-reduce, so the same theta^-
    ema_update(ctx.ema, acc.unwrap_model(ctx.student), cfg.ema_decay)

    values = torch.stack([loss.detach(), loss_cd.detach(), loss_g.detach(), loss_d.detach()]).float()
    values = acc.reduce(values, reduction="mean") if acc.num_processes > 1 else values
    return dict(zip(("loss", "loss_cd", "loss_g", "loss_d"), values.tolist(), strict=True))


def _unet_fn(unet: torch.nn.Module):
    """The frozen teacher as a conditional model function, run in its own weight dtype."""
    dtype = next(unet.parameters()).dtype
    return lambda z, t, text: unet(z.to(dtype), t, encoder_hidden_states=text.to(dtype)).sample


# -- data, checkpoints, summaries ------------------------------------------------------------------------


def _make_batches(config: DistillConfig, bundle, encoders: Encoders, work: Path, acc: Accelerator):
    spec = parse_spec(config.data)
    resolution = bundle.default_size
    if not spec.finite:
        return StreamedBatches(spec, encoders, resolution, config.seed, acc.process_index, acc.num_processes)
    teacher_dir, _ = config.require_paths()
    path = cache_path(work, spec, teacher_dir, resolution)
    with acc.main_process_first():  # rank 0 encodes and writes; the others then read its file
        if not path.is_file():
            build_cache(spec, encoders, resolution).save(path)
        return CachedBatches(LatentCache.load(path))


def parameter_digest(module: torch.nn.Module) -> str:
    """sha256 over every parameter's bytes, in order: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, p in module.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _write_rank_summary(work: Path, rank: int, world: int, steps: int, student: torch.nn.Module, loss: float) -> None:
    """Each rank records what it ended with, so a distributed run can be audited (weights equal on all ranks)."""
    summary = {"rank": rank, "world_size": world, "steps": steps, "last_loss": loss}
    summary["student"] = parameter_digest(student)
    work.mkdir(parents=True, exist_ok=True)
    (work / f"rank-{rank}.json").write_text(json.dumps(summary))


def _run_header(config: DistillConfig, student, disc, world: int) -> dict[str, Any]:
    header: dict[str, Any] = {"config": config.to_dict(), "world_size": world}
    header["student_params"] = sum(p.numel() for p in student.parameters())
    if disc is not None:
        inner = disc.module if hasattr(disc, "module") else disc
        trained, total = inner.trainable_share()
        header["discriminator"] = {"trainable": trained, "total": total, "share": trained / total}
    return header
