"""How much each caption word moves the data's images, and whether a teacher reads each word.

    python benchmarks/word_signal.py [--images 400] [--model runs/x2/teacher/model] [--json FILE]

1. Data: render a training image, change one attribute with the same random draws (placement, size, rotation,
   shades), and take the mean squared change of pixels in [-1, 1]. For shape, also the change between two shapes
   each averaged over rotation: the part of a shape a model can predict from the word before it picks a rotation.
2. With --model (a teacher: UNet without a guidance embedding): the summed L2 change of the text encoder's 77
   token states when one word of a caption is swapped, and the mean absolute pixel change of 25-step DDIM samples
   from one noise when only that word changes. A word the text encoder separates but the samples ignore is a
   word the UNet has not learned to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scott.data.attributes import ATTRIBUTE_NAMES, VOCAB, Attributes  # noqa: E402
from scott.data.render import RenderParams, draw_params, render  # noqa: E402
from scott.data.samples import sample  # noqa: E402

ROTATIONS = 24  # rotation average: 15-degree steps
BASE = Attributes(shape="circle", color="red", size="large", position="center", background="white")


def pixels(params: RenderParams) -> np.ndarray:
    return render(params).astype(np.float64) / 127.5


def valid_values(attrs: Attributes, name: str) -> list[str]:
    """Values of one attribute that make a valid record with the rest, its own value included: Attributes' own check
    decides (the background never takes the shape's colour)."""
    values = []
    for value in VOCAB[name]:
        try:
            dataclasses.replace(attrs, **{name: value})
        except ValueError:
            continue
        values.append(value)
    return values


def other_value(attrs: Attributes, name: str, rng: np.random.Generator) -> str:
    """A different valid value of one attribute."""
    values = [v for v in valid_values(attrs, name) if v != getattr(attrs, name)]
    return values[int(rng.integers(len(values)))]


def data_signal(images: int, seed: int = 0) -> dict[str, float]:
    """Mean squared pixel change per attribute changed alone, plus the rotation-averaged shape change."""
    rng = np.random.default_rng(seed)
    changes: dict[str, list[float]] = {name: [] for name in ATTRIBUTE_NAMES}
    averaged: list[float] = []
    for index in range(images):
        attrs = sample("train", index).attributes
        draw = int(rng.integers(1 << 30))
        params = draw_params(attrs, np.random.default_rng(draw))
        base = pixels(params)
        for name in ATTRIBUTE_NAMES:
            changed = dataclasses.replace(attrs, **{name: other_value(attrs, name, rng)})
            changes[name].append(
                float(((pixels(draw_params(changed, np.random.default_rng(draw))) - base) ** 2).mean())
            )
        if index < images // 8:  # 24 renders per shape: a subset is plenty
            means = [
                np.mean([pixels(dataclasses.replace(params, shape=s, rotation=2 * math.pi * k / ROTATIONS))
                         for k in range(ROTATIONS)], axis=0)
                for s in VOCAB["shape"]
            ]  # fmt: skip
            averaged += [float(((a - b) ** 2).mean()) for a, b in itertools.combinations(means, 2)]
    return {name: float(np.mean(v)) for name, v in changes.items()} | {
        "shape, rotation-averaged": float(np.mean(averaged))
    }


def teacher_signal(model_dir: Path, seed: int = 7) -> dict[str, dict[str, float]]:
    """Per attribute: token-state distance and sample pixel change when only that word of BASE's caption changes."""
    from scott.models import load_model
    from scott.recipe.ddim import encode_prompts, teacher_sample

    bundle = load_model(model_dir)
    out: dict[str, dict[str, float]] = {}
    for name in ATTRIBUTE_NAMES:
        values = valid_values(BASE, name)[:5]
        prompts = [dataclasses.replace(BASE, **{name: v}).caption() for v in values]
        with torch.no_grad():
            states = encode_prompts(bundle, prompts)
            images = teacher_sample(bundle, prompts, [seed] * len(prompts), 25, 4.0).astype(np.float64)
        pairs = list(itertools.combinations(range(len(prompts)), 2))
        out[name] = {
            "token_state_distance": float(
                np.mean([(states[a] - states[b]).norm(dim=-1).sum().item() for a, b in pairs])
            ),
            "sample_pixel_change": float(np.mean([np.abs(images[a] - images[b]).mean() for a, b in pairs])),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--model", type=Path, default=None, help="a teacher folder: also its text and sample rows")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    record: dict = {"images": args.images, "data": data_signal(args.images)}
    console = Console()
    table = Table(title=f"Mean squared pixel change, one attribute changed ({args.images} training images)")
    table.add_column("attribute")
    table.add_column("change", justify="right")
    for name, value in record["data"].items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    if args.model is not None:
        record["model"], record["teacher"] = str(args.model), teacher_signal(args.model)
        table = Table(title=f"Swapping one word of {BASE.caption()!r}: {args.model}")
        for column in ("attribute", "token-state distance", "25-step sample change (of 255)"):
            table.add_column(column, justify="right")
        for name, row in record["teacher"].items():
            table.add_row(name, f"{row['token_state_distance']:.1f}", f"{row['sample_pixel_change']:.1f}")
        console.print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
