"""Stage 5: distill a tiny decoder (diffusers' AutoencoderTiny) from the model's VAE decoder.

At one sampler step the VAE decoder is most of an image's latency; a tiny decoder (TAESD's architecture: plain
3x3 convolutions and ReLUs, no GroupNorm, no attention) serves in its place at a small cost in fidelity.
It learns to reproduce the full decoder's image (clamped to [-1, 1], as served) from the same latents, drawn from a
pool made once: half posterior samples of training images (what the decoder was trained on), half the student's own
latents at 1, 2 and 4 steps for training captions (which are not exactly posterior samples). Loss: L1 + L2 + an L1
on image gradients, as the VAE's. The tiny decoder takes the diffusion latents as they are (scaling_factor 1.0, as
TAESD does). Only the decoder is trained; the folder's encoder is the smallest AutoencoderTiny allows and is never used.

`python -m scott.recipe.tiny_decoder --model models/scott-tiny --out runs/tiny-decoder` runs this stage alone on a
finished model folder and writes `<model>/vae_tiny/`; `make embedded-model` runs it after the student.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import AutoencoderTiny

from scott.data.dataset import make_batch
from scott.data.samples import TRAIN_CAPTIONS, sample
from scott.decoder import TINY_SUBFOLDER, build_tiny_decoder, latent_scaling
from scott.eval.psnr import psnr
from scott.images import to_uint8
from scott.models import ModelBundle, load_model
from scott.pipeline import ImageRequest, TextToImagePipeline
from scott.recipe.config import RecipeConfig, TinyDecoderConfig, load_config
from scott.recipe.loop import Schedule, Trainable, train
from scott.recipe.stage import StageDir
from scott.recipe.vae import edge_l1
from scott.train.log import say
from scott.train.rng import keyed_generator

STAGE = "tiny_decoder"


class DecoderTargets:
    """Latents of both kinds and the full decoder's images of them, for training steps and evaluation."""

    def __init__(self, bundle: ModelBundle, cfg: TinyDecoderConfig) -> None:
        self.cfg, self.vae = cfg, bundle.vae
        self.scaling, self.shift = latent_scaling(bundle.vae.config)
        self.pipeline = TextToImagePipeline.from_bundle(bundle)
        self.size = self.pipeline.info.default_size

    @torch.no_grad()
    def posterior_latents(self, split: str, start: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
        """Diffusion latents of images start.. of a split: posterior samples, or the means when generator is None."""
        dist = self.vae.encode(make_batch(split, start, count).images).latent_dist
        z = dist.mean if generator is None else dist.sample(generator=generator)
        return (z - self.shift) * self.scaling

    @torch.no_grad()
    def student_latents(
        self, prompts: list[str], steps: int, generator: torch.Generator, guidance: float | None = None
    ) -> torch.Tensor:
        """The student's clean latents for prompts at `steps`; seeds and (unless given) guidance from generator."""
        low, high = self.cfg.guidance_range
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),), generator=generator).tolist()
        scales = (low + (high - low) * torch.rand(len(prompts), generator=generator)).tolist()
        info = self.pipeline.info
        requests = [
            ImageRequest(p, s, steps, guidance if guidance is not None else w, info.default_gamma, self.size, self.size)
            for p, s, w in zip(prompts, seeds, scales, strict=True)
        ]
        return self.pipeline.sample_latents(requests)

    @torch.no_grad()
    def full_images(self, latents: torch.Tensor) -> torch.Tensor:
        """What the served full decoder shows for these latents, in [-1, 1]."""
        return self.vae.decode(latents / self.scaling + self.shift).sample.clamp(-1, 1)


def tiny_decode(tiny: AutoencoderTiny, latents: torch.Tensor) -> torch.Tensor:
    """As scott.backend.ModuleBackend.decode does for any decoder."""
    scaling, shift = latent_scaling(tiny.config)
    return tiny.decode(latents / scaling + shift).sample


def decoder_loss(
    tiny: AutoencoderTiny, latents: torch.Tensor, target: torch.Tensor, cfg: TinyDecoderConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    image = tiny_decode(tiny, latents)
    l1, l2 = (image - target).abs().mean(), (image - target).pow(2).mean()
    edge = edge_l1(image, target)
    loss = l1 + cfg.l2_weight * l2 + cfg.edge_weight * edge
    return loss, {"l1": l1.item(), "l2": l2.item(), "edge": float(edge.item())}


@torch.no_grad()
def evaluate_tiny_decoder(tiny: AutoencoderTiny, targets: DecoderTargets, count: int) -> dict[str, float]:
    """PSNR of the tiny decoder's uint8 images against the full decoder's, on held-out latents of both kinds:
    posterior means of val-split images, and the student's 1-step latents for val-split captions."""
    generator = keyed_generator("tiny-decoder-eval")
    prompts = [sample("val", i).caption for i in range(count)]
    kinds = {
        "posterior": targets.posterior_latents("val", 0, count, None),
        "student": targets.student_latents(prompts, 1, generator, targets.pipeline.info.default_guidance_scale),
    }
    out = {}
    for kind, latents in kinds.items():
        full = to_uint8(targets.full_images(latents))
        scores = psnr(to_uint8(tiny_decode(tiny, latents)), full)
        out[f"psnr_{kind}"], out[f"psnr_{kind}_min"] = float(scores.mean()), float(scores.min())
    return out


def latent_pool(targets: DecoderTargets, cfg: TinyDecoderConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, the full decoder's images of them in fp16): posterior samples and the student's latents, made in
    chunks from keyed generators, so a resumed run rebuilds the same pool."""
    chunk = 64
    n_student = round(cfg.pool_size * cfg.student_fraction)
    latents = []
    for start in range(0, cfg.pool_size - n_student, chunk):
        count = min(chunk, cfg.pool_size - n_student - start)
        generator = keyed_generator(seed, STAGE, "posterior", start)
        latents.append(targets.posterior_latents("train", start, count, generator))
    for start in range(0, n_student, chunk):
        count = min(chunk, n_student - start)
        steps = cfg.student_steps[(start // chunk) % len(cfg.student_steps)]
        prompts = [sample("train", 5_000_000 + start + i, TRAIN_CAPTIONS).caption for i in range(count)]
        latents.append(targets.student_latents(prompts, steps, keyed_generator(seed, STAGE, "student", start)))
    pool = torch.cat(latents)
    images = torch.cat([targets.full_images(z).half() for z in pool.split(chunk)])
    say(STAGE, f"pool: {len(pool)} latents ({n_student} from the student)")
    return pool, images


def run_tiny_decoder_stage(run_dir: Path, cfg: RecipeConfig, model_dir: Path, stop_after: int | None = None) -> bool:
    """Train (or resume) the tiny decoder of the model at model_dir; on completion save it to <model>/vae_tiny."""
    c = cfg.tiny_decoder
    stage = StageDir(run_dir, STAGE, {"seed": cfg.seed, **asdict(c)})
    out = Path(model_dir) / TINY_SUBFOLDER
    if stage.complete and out.is_dir():
        say(STAGE, f"complete, skipping ({stage.path})")
        return True
    bundle = load_model(model_dir)
    tiny = build_tiny_decoder(bundle.vae, c.arch, cfg.seed)
    targets = DecoderTargets(bundle, c)
    optimizer = torch.optim.AdamW(tiny.decoder.parameters(), lr=c.lr, weight_decay=0.0)
    schedule = Schedule(c.steps, c.lr, c.warmup_steps, c.min_lr_ratio, c.max_grad_norm, c.checkpoint_every)
    latents, images = latent_pool(targets, c, cfg.seed)

    def step_fn(step: int, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        pick = torch.randint(0, len(latents), (c.batch_size,), generator=generator)
        return decoder_loss(tiny, latents[pick], images[pick].float(), c)

    if not train(stage, Trainable({"tiny_decoder": tiny}, optimizer), schedule, step_fn, cfg.seed, stop_after):
        return False
    tiny.eval()
    metrics = evaluate_tiny_decoder(tiny, targets, c.eval_samples)
    copy.deepcopy(tiny).to(torch.float16).save_pretrained(str(out), safe_serialization=True)
    say(STAGE, f"saved {out}; " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    stage.mark_complete(metrics=metrics)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scott.recipe.tiny_decoder", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder: reads vae/, unet/; writes vae_tiny/")
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, log)")
    parser.add_argument("--config", type=Path, default=None, help="recipe TOML; its [tiny_decoder] section is used")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (overrides the config)")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    torch.set_num_threads(args.threads or cfg.threads)
    run_tiny_decoder_stage(args.out, cfg, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
