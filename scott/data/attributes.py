"""The attribute vocabulary of the procedural dataset, and captions <-> attribute records."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

# Order matters: a label is the index of a value in its tuple, and classifiers/checkpoints depend on it.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SIZES: tuple[str, ...] = ("small", "medium", "large")
POSITIONS: tuple[str, ...] = (
    "top left",
    "top center",
    "top right",
    "center left",
    "center",
    "center right",
    "bottom left",
    "bottom center",
    "bottom right",
)
BACKGROUNDS: tuple[str, ...] = ("black", "white", "gray", "red", "green", "blue")

ATTRIBUTE_NAMES: tuple[str, ...] = ("shape", "color", "size", "position", "background")
VOCAB: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": COLORS,
    "size": SIZES,
    "position": POSITIONS,
    "background": BACKGROUNDS,
}
NUM_CLASSES: dict[str, int] = {name: len(values) for name, values in VOCAB.items()}


@dataclass(frozen=True)
class Attributes:
    """What a caption says about its image; None means the caption leaves that attribute open.

    A rendered sample always has every field set; a prompt may leave any field but the shape open.
    """

    shape: str
    color: str | None = None
    size: str | None = None
    position: str | None = None
    background: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value not in VOCAB[f.name]:
                raise ValueError(f"unknown {f.name} {value!r}; expected one of {VOCAB[f.name]}")
        if self.background is not None and self.background == self.color:
            raise ValueError(f"a {self.color} shape on a {self.background} background is not a valid combination")

    @property
    def complete(self) -> bool:
        return all(getattr(self, name) is not None for name in ATTRIBUTE_NAMES)

    def named(self) -> tuple[bool, ...]:
        """Which attributes the record fixes, in ATTRIBUTE_NAMES order."""
        return tuple(getattr(self, name) is not None for name in ATTRIBUTE_NAMES)

    def labels(self) -> tuple[int, ...]:
        """Class index per attribute in ATTRIBUTE_NAMES order; -1 where the record leaves it open."""
        out = []
        for name in ATTRIBUTE_NAMES:
            value = getattr(self, name)
            out.append(VOCAB[name].index(value) if value is not None else -1)
        return tuple(out)

    @classmethod
    def from_labels(cls, labels: tuple[int, ...] | list[int]) -> Attributes:
        """Inverse of labels(); -1 leaves an attribute open."""
        values = {
            name: (VOCAB[name][int(i)] if int(i) >= 0 else None)
            for name, i in zip(ATTRIBUTE_NAMES, labels, strict=True)
        }
        return cls(**values)

    def restrict(self, keep: tuple[bool, ...] | list[bool]) -> Attributes:
        """The same record with the attributes where keep is False left open (the shape is always kept)."""
        values = {
            name: getattr(self, name) if (k or name == "shape") else None
            for name, k in zip(ATTRIBUTE_NAMES, keep, strict=True)
        }
        return Attributes(**values)

    def caption(self) -> str:
        return caption(self)


def caption(attrs: Attributes) -> str:
    """One canonical template: 'a [size] [color] <shape>[ in the <position>][ on a <background> background]'."""
    words = ["a"]
    if attrs.size is not None:
        words.append(attrs.size)
    if attrs.color is not None:
        words.append(attrs.color)
    words.append(attrs.shape)
    if attrs.position is not None:
        words += ["in", "the", attrs.position]
    if attrs.background is not None:
        words += ["on", "a", attrs.background, "background"]
    return " ".join(words)


def _alternation(values: tuple[str, ...]) -> str:
    # Longest first, so "center left" wins over "center".
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


_CAPTION_RE = re.compile(
    rf"^an? (?:(?P<size>{_alternation(SIZES)}) )?(?:(?P<color>{_alternation(COLORS)}) )?"
    rf"(?P<shape>{_alternation(SHAPES)})"
    rf"(?: in the (?P<position>{_alternation(POSITIONS)}))?"
    rf"(?: on an? (?P<background>{_alternation(BACKGROUNDS)}) background)?$"
)


def parse_caption(text: str) -> Attributes:
    """Inverse of caption(): the attribute record a caption names. Raises ValueError on other text."""
    match = _CAPTION_RE.match(" ".join(text.strip().lower().rstrip(".").split()))
    if match is None:
        raise ValueError(f"not a caption of the procedural dataset: {text!r}")
    return Attributes(**match.groupdict())
