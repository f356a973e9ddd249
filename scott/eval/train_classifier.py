"""Train the attribute classifier: `python -m scott.eval.train_classifier --out models/classifier`."""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scott.data.attributes import ATTRIBUTE_NAMES
from scott.data.dataset import CachedDataset
from scott.eval.classifier import AttributeClassifier, ClassifierConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    train_images: int = 40_000  # rendered once, then reused (each image is seen ~5 times at the defaults)
    val_images: int = 5_000
    noise_std: float = 0.04  # augmentation, in [-1, 1] units: generated images are never perfectly clean
    blur_prob: float = 0.15
    # Colour, position and background are learned in ~100 steps and then dominate Adam's step sizes; the shape,
    # the slow attribute, gets a larger share of the loss.
    shape_weight: float = 2.0
    seed: int = 0


def augment(images: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Mild blur and noise, so the classifier judges attributes, not the crispness of a renderer's edges."""
    b = images.shape[0]
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    use_blur = (torch.rand(b, 1, 1, 1, generator=gen) < cfg.blur_prob).float()
    images = use_blur * blurred + (1 - use_blur) * images
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * cfg.noise_std
    return images + sigma * torch.randn(images.shape, generator=gen)


@torch.no_grad()
def accuracy(model: AttributeClassifier, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Per-attribute accuracy and 'all' (every attribute right) on float images in [-1, 1]."""
    pred, _ = model.predict(images)
    right = pred == labels
    out = {name: float(right[:, i].float().mean()) for i, name in enumerate(ATTRIBUTE_NAMES)}
    out["all"] = float(right.all(dim=1).float().mean())
    return out


def train_classifier(
    cfg: TrainConfig = TrainConfig(),
    model_config: ClassifierConfig | None = None,
    log_every: int = 0,
) -> tuple[AttributeClassifier, dict]:
    """Train on the classifier_train split, report accuracy on classifier_val (unseen images of every combination)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    train = CachedDataset.build("classifier_train", cfg.train_images)
    val = CachedDataset.build("classifier_val", cfg.val_images)
    render_s = time.perf_counter() - t0

    model = AttributeClassifier(model_config)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.steps // 20)

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: list[float] = []
    model.train()
    t1 = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(len(train), (cfg.batch_size,), generator=gen)
        images, labels = train.batch(idx)
        logits = model(augment(images, cfg, gen))
        loss = sum(
            (cfg.shape_weight if n == "shape" else 1.0) * F.cross_entropy(logits[n], labels[:, i])
            for i, n in enumerate(ATTRIBUTE_NAMES)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(loss.item())
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            right = {
                n: (logits[n].argmax(-1) == labels[:, i]).float().mean().item() for i, n in enumerate(ATTRIBUTE_NAMES)
            }
            batch_acc = " ".join(f"{n} {a:.2f}" for n, a in right.items())
            elapsed = time.perf_counter() - t1
            print(f"step {step + 1}/{cfg.steps} loss {losses[-1]:.4f} batch acc {batch_acc} ({elapsed:.0f} s)")
    train_s = time.perf_counter() - t1
    model.eval()
    val_images, val_labels = val.batch(slice(None))
    report = {
        "val_accuracy": accuracy(model, val_images, val_labels),
        # Mean training loss over the first and the last tenth of the steps.
        "loss_start": sum(losses[: max(1, cfg.steps // 10)]) / max(1, cfg.steps // 10),
        "loss_end": sum(losses[-max(1, cfg.steps // 10) :]) / max(1, cfg.steps // 10),
        "render_seconds": round(render_s, 1),
        "train_seconds": round(train_s, 1),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
    }
    return model, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="directory for model.safetensors + config.json")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--train-images", type=int, default=TrainConfig.train_images)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, train_images=args.train_images, seed=args.seed)
    model, report = train_classifier(cfg, log_every=100)
    out = model.save(args.out)
    # Measure the saved (fp16) weights, the ones every evaluation will use.
    from scott.eval.classifier import load_classifier

    val = CachedDataset.build("classifier_val", cfg.val_images)
    report["val_accuracy_saved_fp16"] = accuracy(load_classifier(out), *val.batch(slice(None)))
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
