"""A small multi-head CNN that reads the attributes of a 64x64 procedural image, and whose penultimate layer
is the low-dimensional feature space of the FID and diversity metrics."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from scott.data.attributes import ATTRIBUTE_NAMES, NUM_CLASSES

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# The classifier that ships with the repository (trained by scott.eval.train_classifier).
DEFAULT_CLASSIFIER_DIR = Path(__file__).resolve().parents[2] / "models" / "classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    # A stride-1 stem at full resolution: without it (stride-2 first conv, or pixel-unshuffle) the shape head stayed
    # at chance for hundreds of steps; small stars, crosses and triangles differ in a few pixels.
    stem: int = 16
    channels: tuple[int, ...] = (32, 64, 128, 128)  # one stride-2 stage each: 64 -> 32 -> 16 -> 8 -> 4
    depths: tuple[int, ...] = (1, 2, 1, 1)  # convs per stage
    hidden: int = 128
    feature_dim: int = 64
    image_size: int = 64
    heads: dict[str, int] = field(default_factory=lambda: dict(NUM_CLASSES))  # attribute -> number of classes

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return cls(**{**d, "channels": tuple(d["channels"]), "depths": tuple(d["depths"])})


def _stage(cin: int, cout: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [
            nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=2 if i == 0 else 1, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class AttributeClassifier(nn.Module):
    """images float (B, 3, 64, 64) in [-1, 1] -> one logit vector per attribute.

    The embedding reads both the flattened final map and its global max pool.
    """

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClassifierConfig()
        c = self.config
        if len(c.depths) != len(c.channels):
            raise ValueError(f"channels {c.channels} and depths {c.depths} must have the same length")
        stem = nn.Sequential(
            nn.Conv2d(3, c.stem, 3, padding=1, bias=False), nn.BatchNorm2d(c.stem), nn.ReLU(inplace=True)
        )
        pairs = itertools.pairwise((c.stem, *c.channels))
        self.trunk = nn.Sequential(stem, *(_stage(a, b, d) for (a, b), d in zip(pairs, c.depths, strict=True)))
        side = c.image_size // 2 ** len(c.channels)
        self.embed = nn.Sequential(
            nn.Linear(c.channels[-1] * (side * side + 1), c.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(c.hidden, c.feature_dim),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(c.feature_dim, n) for name, n in c.heads.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) penultimate-layer embedding: the space of FID, precision/recall, density/coverage."""
        h = self.trunk(images)
        # Flatten keeps where things are (position); a global max pool says what is anywhere (shape, colour)
        # without having to learn it once per location.
        return self.embed(torch.cat([h.flatten(1), h.amax(dim=(2, 3))], dim=1))

    @torch.no_grad()
    def low_level_features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """(B, 2 * (stem + channels[0] + channels[1])) float32: each channel's spatial mean and std on the stem's and
        the first two stages' maps (64x64, 32x32, 16x16). Edges, texture and colour live there, where the
        penultimate features are trained to ignore them: blur, noise and colour shifts move these (fd_low)."""
        was_training = self.training
        self.eval()
        dtype = next(self.parameters()).dtype
        out = []
        for chunk in images.split(batch_size):
            h, stats = chunk.to(dtype), []
            for layer in self.trunk[:3]:
                h = layer(h)
                stats += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]
            out.append(torch.cat(stats, dim=1).float())
        self.train(was_training)
        return torch.cat(out)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(images)
        return {name: head(f) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels int64 (B, n_attributes) in ATTRIBUTE_NAMES order, features float32 (B, feature_dim)); eval mode."""
        was_training = self.training
        self.eval()
        labels, feats = [], []
        dtype = next(self.parameters()).dtype
        for chunk in images.split(batch_size):
            f = self.features(chunk.to(dtype))
            labels.append(torch.stack([self.heads[n](f).argmax(-1) for n in ATTRIBUTE_NAMES], dim=1))
            feats.append(f.float())
        self.train(was_training)
        return torch.cat(labels), torch.cat(feats)

    def save(self, directory: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_NAME)
        (directory / CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        return directory


def load_classifier(directory: str | Path | None = None, dtype: torch.dtype = torch.float32) -> AttributeClassifier:
    """Load a saved classifier (default: the one shipped under models/classifier) in eval mode."""
    directory = Path(directory) if directory is not None else DEFAULT_CLASSIFIER_DIR
    if not (directory / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"no classifier at {directory}; train one with `python -m scott.eval.train_classifier --out {directory}`"
        )
    config = ClassifierConfig.from_dict(json.loads((directory / CONFIG_NAME).read_text()))
    if config.heads != NUM_CLASSES or list(config.heads) != list(ATTRIBUTE_NAMES):
        raise ValueError(f"classifier heads {config.heads} do not match the dataset's attributes {NUM_CLASSES}")
    model = AttributeClassifier(config)
    model.load_state_dict(load_file(directory / WEIGHTS_NAME))
    return model.to(dtype).eval()
