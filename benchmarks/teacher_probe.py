"""Teacher variants for the embedded model, trained side by side on one GPU (one process each) for a fixed
wall-clock budget and scored at step milestones: DDIM (25 and 4 steps, CFG 4) on 48 held-out prompts x 4 seeds,
attributes read by the shipped classifier. A probe for the CPU recipe (scott/recipe/README.md): a CPU run of
2,000 teacher steps takes 30 minutes, the GPU runs eight such probes in five.

    python benchmarks/teacher_probe.py --run RUN --out OUT --budget 330 \
        --variants base fg3 4level xattn16 layers2 lr1e-3 wide b128
    python benchmarks/teacher_probe.py --run RUN --out OUT --budget 150 --variants te_frozen te_frozen_emb10 ...

RUN holds a complete recipe vae/ stage (the latent cache is built there if missing). Each variant is the recipe's
teacher (recipes/embedded.toml, plain loss) with the fields below changed; the lr is constant after the warm-up.
Results (H200, 2026-11-26): benchmarks/results/teacher_probe_NVIDIA_H200.jsonl.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scott.recipe.config import load_config  # noqa: E402 (stdlib-only: light for the spawned processes)

BASE_ARCH = {
    "block_out_channels": [32, 64, 128],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}
VARIANTS: dict[str, dict] = {
    "te_frozen": {"te_lr": 0.0},
    "te_frozen_emb10": {"te_lr": 0.0, "emb_scale": 10.0},
    "te_lr0.1": {"te_lr": 0.1},
    "te_emb10_lr0.1": {"te_lr": 0.1, "emb_scale": 10.0},
    "te_frozen_xattn16": {
        "te_lr": 0.0,
        "arch": {"down_block_types": ["CrossAttnDownBlock2D"] * 3, "up_block_types": ["CrossAttnUpBlock2D"] * 3},
    },
    "te_frozen_fg3": {"te_lr": 0.0, "foreground_weight": 3.0},
    "base": {},
    "fg3": {"foreground_weight": 3.0},
    "4level": {
        "arch": {
            "block_out_channels": [32, 64, 128, 128],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        }
    },
    "xattn16": {
        "arch": {
            "down_block_types": ["CrossAttnDownBlock2D"] * 3,
            "up_block_types": ["CrossAttnUpBlock2D"] * 3,
        }
    },
    "layers2": {"arch": {"layers_per_block": 2}},
    "lr1e-3": {"lr": 1e-3},
    "wide": {"arch": {"block_out_channels": [64, 128, 256]}},
    "b128": {"batch_size": 128},
}
# The shape probe (fifth session): every change above again, on the recipe's frozen x10 text encoder.
EMB10 = VARIANTS["te_frozen_emb10"]
XATTN16 = VARIANTS["xattn16"]["arch"]
VARIANTS |= {
    "emb10_xattn16": EMB10 | {"arch": XATTN16},
    "emb10_xattn16_layers2": EMB10 | {"arch": XATTN16 | {"layers_per_block": 2}},
    "emb10_layers2": EMB10 | {"arch": {"layers_per_block": 2}},
    "emb10_wide": EMB10 | {"arch": {"block_out_channels": [64, 128, 256]}},
    "emb10_wide128": EMB10 | {"arch": {"block_out_channels": [128, 128, 256]}},  # 4x the channels at 16x16
    "emb10_b128": EMB10 | {"batch_size": 128},
    "emb10_fg3": EMB10 | {"foreground_weight": 3.0},
    "emb10_lr1e-3": EMB10 | {"lr": 1e-3},
}
# Text conditioning on the 2x latents (32x32x4; recipes/embedded-2x.toml): its teacher read no caption word but
# the background at 2,400 steps and never the shape word by 6,000. X2 is that recipe's UNet, read from it. CPU rows:
# benchmarks/results/teacher_probe_x2_textpool_cpu{,_2threads}.jsonl.
X2 = load_config(ROOT / "recipes" / "embedded-2x.toml").teacher.arch
VARIANTS |= {
    "x2": EMB10 | {"arch": X2},
    # The caption pooled by attention (DeepFloyd IF's TextTimeEmbedding) and added to the timestep embedding, so it
    # reaches every ResNet block at every resolution, besides the cross-attention at 8x8 and 4x4.
    "x2_textpool": EMB10 | {"arch": X2 | {"addition_embed_type": "text", "addition_embed_type_num_heads": 4}},
}
MILESTONES = [500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 14000, 16000, 20000, 25000, 30000]


def log(out: Path, record: dict) -> None:
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def score(name, step, te, unet, vae, tokenizer, scheduler_config, classifier, prompts, out, elapsed) -> dict:
    from scott.eval.evaluate import evaluate
    from scott.models import ModelBundle
    from scott.recipe.ddim import teacher_sample

    bundle = ModelBundle(None, tokenizer, te.eval(), unet.eval(), vae, scheduler_config)
    record = {"variant": name, "step": step, "seconds": round(elapsed, 1)}
    for steps in (25, 4):

        def generate(ps, seeds, steps=steps):
            return teacher_sample(bundle, ps, seeds, steps, 4.0)

        m = evaluate(generate, prompts, 4, classifier, real_floor=False, batch_size=96)
        record[f"ddim{steps}"] = {
            k.removeprefix("accuracy_"): round(v, 3) for k, v in m.items() if k.startswith("accuracy_")
        } | {"prompt": round(m["prompt_accuracy"], 3), "fid": round(m["fid"], 2)}
    log(out, record)
    return record


@dataclasses.dataclass(frozen=True)
class ProbeRun:
    """What every variant's process shares: the data, where reports go, when to stop, when to save."""

    run: Path
    out: Path
    deadline: float
    device: str
    threads: int
    n_prompts: int
    save_at: int  # save the EMA teacher at this step (0: never)
    max_steps: int  # stop at this step (0: at the deadline only)


def train_variant(name: str, probe: ProbeRun) -> None:
    try:
        _train_variant(name, probe)
    except Exception:
        with open(probe.out / "log.txt", "a") as f:
            f.write(f"{name} FAILED\n{traceback.format_exc()}\n")
        traceback.print_exc()


def _train_variant(name: str, probe: ProbeRun) -> None:
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from scott.eval.classifier import load_classifier
    from scott.eval.prompts import eval_prompts
    from scott.models import PRESETS, ModelBundle, save_model
    from scott.recipe.ddim import teacher_sample
    from scott.recipe.latents import load_latents, tokenize
    from scott.recipe.teacher import build_teacher_networks, save_grid
    from scott.schedule import NoiseSchedule
    from scott.tokenizer import load_tokenizer

    run, out, deadline, threads = probe.run, probe.out, probe.deadline, probe.threads
    save_at, max_steps = probe.save_at, probe.max_steps
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.device(probe.device)
    v = VARIANTS[name]
    cfg = load_config(ROOT / "recipes" / "embedded.toml")
    tc = cfg.teacher
    lr = v.get("lr", tc.lr)
    batch = v.get("batch_size", tc.batch_size)
    fgw = v.get("foreground_weight", 0.0)
    arch = {**BASE_ARCH, **v.get("arch", {})}
    data = load_latents(run)
    tokenizer = load_tokenizer(run / "tokenizer")
    te, unet = build_teacher_networks(cfg.preset, cfg.seed, 4, int(data.mean.shape[-1]), arch, v.get("emb_scale", 1.0))
    te_lr = v.get("te_lr", 1.0)  # multiplier on lr; 0 = frozen at init
    te.requires_grad_(te_lr > 0)
    te.to(dev)
    unet.to(dev)
    ema_te, ema_unet = copy.deepcopy(te), copy.deepcopy(unet)
    params = [*te.parameters(), *unet.parameters()]
    ema_params = [*ema_te.parameters(), *ema_unet.parameters()]
    n_params = sum(p.numel() for p in unet.parameters())
    groups = [{"params": list(unet.parameters()), "mult": 1.0}]
    if te_lr > 0:
        groups.append({"params": list(te.parameters()), "mult": te_lr})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=tc.weight_decay, foreach=True)
    scheduler_config = dict(PRESETS[cfg.preset]["scheduler"])
    base = NoiseSchedule.from_config(scheduler_config)
    schedule = dataclasses.replace(base, alphas_cumprod=base.alphas_cumprod.to(dev))
    mean, std = data.mean.to(dev), data.std.to(dev)
    ids, fg = data.input_ids.to(dev), data.foreground.to(dev)
    empty = tokenize(tokenizer, [""])[0].to(dev)
    vae = AutoencoderKL.from_pretrained(str(run / "vae" / "model"), local_files_only=True).to(dev).eval()
    classifier = load_classifier()
    prompts = eval_prompts(probe.n_prompts, "heldout")
    g = torch.Generator(device=dev).manual_seed(0)
    n = len(data)
    t0 = time.time()
    loss_sum = torch.zeros((), device=dev)
    step = 0
    with open(out / "log.txt", "a") as f:
        f.write(f"{name}: unet params {n_params}, lr {lr}, batch {batch}, fg {fgw}, text lr x{te_lr}, {v}, {arch}\n")
    while True:
        step_lr = lr * min(1.0, (step + 1) / tc.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = step_lr * group["mult"]
        index = torch.randint(0, n, (batch,), device=dev, generator=g)
        z0 = mean[index] + std[index] * torch.randn(mean[index].shape, device=dev, generator=g)
        ids_b = ids[index].clone()
        drop = torch.rand(batch, device=dev, generator=g) < tc.caption_dropout
        ids_b[drop] = empty
        t = torch.randint(0, 1000, (batch,), device=dev, generator=g)
        noise = torch.randn(z0.shape, device=dev, generator=g)
        pred = unet(schedule.add_noise(z0, noise, t), t, te(ids_b)[0]).sample
        weight = 1.0 + fgw * fg[index] if fgw else 1.0
        loss = ((pred - schedule.target_from(z0, noise, t)).pow(2) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], tc.max_grad_norm)
        opt.step()
        decay = min(tc.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        loss_sum += loss.detach()
        step += 1
        out_of_time = time.time() > deadline or step == max_steps
        if step % 250 == 0:
            with open(out / "log.txt", "a") as f:
                f.write(f"{name} step {step} loss {float(loss_sum) / 250:.4f} {time.time() - t0:.0f}s\n")
            loss_sum.zero_()
        # The EMA teacher as a diffusers folder (for benchmarks/quality.py); at the deadline if save_at is not reached.
        if save_at and (step == save_at or (out_of_time and step < save_at)):
            parts = [copy.deepcopy(m).cpu() for m in (ema_te, ema_unet, vae)]
            save_model(ModelBundle(None, tokenizer, *parts, scheduler_config), out / f"teacher-{name}")
            with open(out / "log.txt", "a") as f:
                f.write(f"{name} saved at step {step}: {out / f'teacher-{name}'}\n")
        if step in MILESTONES or out_of_time:
            score(
                name,
                step,
                ema_te,
                ema_unet,
                vae,
                tokenizer,
                scheduler_config,
                classifier,
                prompts,
                out,
                time.time() - t0,
            )
        if out_of_time:
            break
    bundle = ModelBundle(None, tokenizer, ema_te.eval(), ema_unet.eval(), vae, scheduler_config)
    rows = prompts[:4]
    grid = teacher_sample(bundle, [p for p in rows for _ in range(8)], list(range(8)) * len(rows), 25, 4.0)
    save_grid(np.asarray(grid), len(rows), out / f"grid-{name}.png")
    with open(out / "log.txt", "a") as f:
        f.write(f"{name} done: {step} steps in {time.time() - t0:.0f}s; grid prompts {rows}\n")


def table(out: Path) -> None:
    path = out / "results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    keys = ["prompt", "shape", "color", "size", "position", "background", "fid"]
    print(f"{'variant':10s} {'step':>6s} {'sec':>5s} " + " ".join(f"{k[:5]:>6s}" for k in keys) + "  (25-step DDIM)")
    for r in sorted(records, key=lambda r: (r["variant"], r["step"])):
        m = r["ddim25"]
        print(
            f"{r['variant']:10s} {r['step']:6d} {r['seconds']:5.0f} " + " ".join(f"{m.get(k, -1):6.2f}" for k in keys)
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget", type=float, required=True, help="seconds of training per variant")
    p.add_argument("--join", type=float, default=90, help="seconds to wait for final scoring after the budget")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-prompts", type=int, default=48)
    p.add_argument("--save-at", type=int, default=0, help="save each variant's EMA teacher at this step (0: never)")
    p.add_argument("--max-steps", type=int, default=0, help="stop each variant at this step (0: at the budget only)")
    p.add_argument("--vae", type=Path, default=None, help="a trained VAE folder for a RUN without one (as float32)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    from scott.recipe.latents import run_latents_stage
    from scott.recipe.vae import adopt_vae_stage
    from scott.tokenizer import load_tokenizer, write_clip_tokenizer

    t = time.time()
    torch.set_num_threads(os.cpu_count() or 2)
    cfg = load_config(ROOT / "recipes" / "embedded.toml")
    tokenizer = load_tokenizer(write_clip_tokenizer(args.run / "tokenizer"))
    if args.vae is not None and not (args.run / "vae" / "model").is_dir():
        adopt_vae_stage(args.run, cfg, args.vae)
    run_latents_stage(args.run, cfg, tokenizer)
    print(f"latents ready in {time.time() - t:.0f}s", flush=True)
    deadline = time.time() + args.budget
    ctx = mp.get_context("spawn")
    probe = ProbeRun(
        args.run, args.out, deadline, args.device, args.threads, args.eval_prompts, args.save_at, args.max_steps
    )
    procs = [ctx.Process(target=train_variant, args=(v, probe)) for v in args.variants]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=max(1.0, deadline + args.join - time.time()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    try:
        from PIL import Image

        paths = [args.out / f"grid-{v}.png" for v in args.variants]
        grids = [Image.open(path) for path in paths if path.is_file()]
        if grids:
            canvas = Image.new("RGB", (max(g.width for g in grids), sum(g.height + 8 for g in grids)), "white")
            y = 0
            for grid in grids:
                canvas.paste(grid, (0, y))
                y += grid.height + 8
            canvas.save(args.out / "grids.png")
    except Exception:
        traceback.print_exc()
    table(args.out)


if __name__ == "__main__":
    main()
