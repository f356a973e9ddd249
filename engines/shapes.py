"""What each exported network takes and returns (names, dtypes, symbolic shapes) and TensorRT profiles.

Declared apart from the engines, as TensorRT's demo/Diffusion does, so the ONNX exporter, ONNX
Runtime, the TensorRT builder and runtime, and the tests all read one description. A shape is a
tuple of ints (fixed) and names (dynamic axes): "batch", "height"/"width" (latent), and
"image_height"/"image_width" (the VAE decoder's output, latent size times the VAE factor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scott.pipeline import ModelInfo

TEXT_ENCODER, UNET, VAE_DECODER = "text_encoder", "unet", "vae_decoder"
NETWORKS: tuple[str, ...] = (TEXT_ENCODER, UNET, VAE_DECODER)

Dim = int | str
Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a network."""

    name: str
    dtype: str  # numpy name: "float32", "int32"
    shape: tuple[Dim, ...]

    def dynamic_axes(self) -> dict[int, str]:
        return {axis: dim for axis, dim in enumerate(self.shape) if isinstance(dim, str)}

    def concrete(self, dims: Mapping[str, int]) -> Shape:
        """The shape with every named axis filled in from dims (which must name them all)."""
        missing = [d for d in self.shape if isinstance(d, str) and d not in dims]
        if missing:
            raise KeyError(f"{self.name}: no value for dynamic axes {missing}")
        return tuple(dims[d] if isinstance(d, str) else d for d in self.shape)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class NetworkSpec:
    """A network's I/O, in the order the exported graph takes its inputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file_name(self) -> str:
        return f"{self.name}.onnx"

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx.export's dynamic_axes argument."""
        return {t.name: t.dynamic_axes() for t in (*self.inputs, *self.outputs) if t.dynamic_axes()}


@dataclass(frozen=True)
class ModelDims:
    """The static sizes of a model that its networks' shapes depend on."""

    text_tokens: int  # the CLIP window (77)
    text_dim: int  # hidden size of the text encoder = UNet cross-attention width
    latent_channels: int
    vae_scale_factor: int
    guidance_embedding_dim: int | None  # the UNet's timestep_cond width; None: no such input

    @classmethod
    def from_info(cls, info: ModelInfo, text_dim: int) -> ModelDims:
        return cls(
            text_tokens=info.max_prompt_tokens,
            text_dim=text_dim,
            latent_channels=info.latent_channels,
            vae_scale_factor=info.vae_scale_factor,
            guidance_embedding_dim=info.guidance_embedding_dim,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def latent_dims(self, batch: int, width: int, height: int) -> dict[str, int]:
        """Values of every named axis for `batch` images of width x height pixels."""
        f = self.vae_scale_factor
        return {
            "batch": batch,
            "height": height // f,
            "width": width // f,
            "image_height": height,
            "image_width": width,
        }


def network_specs(dims: ModelDims) -> dict[str, NetworkSpec]:
    """The three exported networks of a model with these dims."""
    latent = ("batch", dims.latent_channels, "height", "width")
    unet_inputs = [
        TensorSpec("sample", "float32", latent),
        # float32, not int64: TensorRT prefers it, and diffusers casts timesteps to float anyway.
        TensorSpec("timestep", "float32", ("batch",)),
        TensorSpec("encoder_hidden_states", "float32", ("batch", dims.text_tokens, dims.text_dim)),
    ]
    if dims.guidance_embedding_dim is not None:
        unet_inputs.append(TensorSpec("timestep_cond", "float32", ("batch", dims.guidance_embedding_dim)))
    return {
        TEXT_ENCODER: NetworkSpec(
            TEXT_ENCODER,
            # int32 ids: TensorRT's native index type; the graph casts to int64 for the embedding.
            inputs=(TensorSpec("input_ids", "int32", ("batch", dims.text_tokens)),),
            outputs=(TensorSpec("text_embeddings", "float32", ("batch", dims.text_tokens, dims.text_dim)),),
        ),
        UNET: NetworkSpec(
            UNET,
            inputs=tuple(unet_inputs),
            outputs=(TensorSpec("model_output", "float32", latent),),
        ),
        VAE_DECODER: NetworkSpec(
            VAE_DECODER,
            inputs=(TensorSpec("latents", "float32", latent),),
            outputs=(TensorSpec("images", "float32", ("batch", 3, "image_height", "image_width")),),
        ),
    }


# -- TensorRT optimization profiles ----------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile: (min, opt, max) shape per input of one network."""

    shapes: tuple[tuple[str, Shape, Shape, Shape], ...]  # (input name, min, opt, max), in input order

    def to_json(self) -> dict[str, dict[str, list[int]]]:
        return {name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, lo, opt, hi in self.shapes}

    def contains(self, name: str, shape: Sequence[int]) -> bool:
        """Whether an input of this shape can run under this profile."""
        for input_name, lo, _, hi in self.shapes:
            if input_name == name:
                return len(shape) == len(lo) and all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True))
        return False


MAX_TENSOR_ELEMENTS = 2**31 - 1  # TensorRT's limit on one tensor's volume


def vae_peak_channels(block_out_channels: Sequence[int]) -> int:
    """The decoder's largest activation of one image, in channels at the output resolution.

    Up-block i of n runs reversed(block_out_channels)[i] channels and, but for the last, upsamples, so it ends at
    1/2^(n-2-i) of the output side (SD-1.5: 512, 512, 256, 128 -> 256 channels at full size, after the third block).
    """
    channels = list(reversed(block_out_channels))
    n = len(channels)
    return max(c // 4 ** max(0, n - 2 - i) for i, c in enumerate(channels))


def decoder_peak_channels(config: Mapping[str, Any]) -> int:
    """vae_peak_channels for an AutoencoderKL config; for an AutoencoderTiny's, its decoder's last stage width (it
    runs at the output size; each earlier stage ends upsampled to 1/2^(n-2-i) of it)."""
    if "decoder_block_out_channels" not in config:
        return vae_peak_channels(config["block_out_channels"])
    channels = list(config["decoder_block_out_channels"])
    n = len(channels)
    return max([channels[-1]] + [c // 4 ** max(0, n - 2 - i) for i, c in enumerate(channels[:-1])])


def vae_max_batch(peak_channels: int, width: int, height: int, max_batch_size: int) -> int:
    """The largest VAE batch whose activations stay within TensorRT's tensor volume at this size."""
    per_image = peak_channels * width * height
    fits = MAX_TENSOR_ELEMENTS // per_image
    if fits < 1:
        raise ValueError(
            f"one {width}x{height} image needs a {per_image:,}-element VAE activation, past TensorRT's "
            f"{MAX_TENSOR_ELEMENTS:,}: build for smaller sizes (--sizes)"
        )
    return min(max_batch_size, fits)


def default_sizes(info: ModelInfo) -> list[tuple[int, int]]:
    """The model's smallest, default and largest square sizes: the range a server accepts."""
    return [(s, s) for s in sorted({info.min_size, info.default_size, info.max_size})]


def build_profiles(
    info: ModelInfo,
    text_dim: int,
    max_batch_size: int,
    sizes: Sequence[tuple[int, int]] | None = None,
    opt_batch_size: int | None = None,
    vae_peak: int | None = None,
) -> dict[str, Profile]:
    """One profile per network covering batch 1..max_batch_size and every (width, height) in sizes.

    vae_peak (vae_peak_channels of the model's VAE): the VAE decoder's profile stops at the batch whose largest
    activation fits TensorRT's tensor volume at the largest size (SD-1.5 at 1024x1024: 7 images, not 8); the
    runtime decodes a larger batch in parts.

    Latent sides range from the smallest to the largest of the sizes; TensorRT tunes kernels for
    the opt shape (the model's default size if it is in range, else the first size; batch
    opt_batch_size, default 1 as latency is what this server optimizes). A model without a
    guidance embedding runs classifier-free guidance as one UNet call on a doubled batch, so its
    UNet profile goes to 2 x max_batch_size (and down to 1: at guidance 1 there is no doubling).
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes = list(sizes) if sizes else default_sizes(info)
    for width, height in sizes:
        problem = info.check_size(width, height)
        if problem:
            raise ValueError(f"size {width}x{height}: {problem}")
    opt_batch = opt_batch_size or 1
    if not 1 <= opt_batch <= max_batch_size:
        raise ValueError(f"opt_batch_size must be in [1, {max_batch_size}], got {opt_batch}")
    dims = ModelDims.from_info(info, text_dim)
    opt_size = (info.default_size, info.default_size)
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    if not (min(widths) <= opt_size[0] <= max(widths) and min(heights) <= opt_size[1] <= max(heights)):
        opt_size = sizes[0]
    unet_factor = 2 if dims.guidance_embedding_dim is None else 1

    def point(batch: int, width: int, height: int) -> dict[str, int]:
        return dims.latent_dims(batch, width, height)

    profiles: dict[str, Profile] = {}
    vae_batch = (
        max_batch_size if vae_peak is None else vae_max_batch(vae_peak, max(widths), max(heights), max_batch_size)
    )
    for name, spec in network_specs(dims).items():
        factor = unet_factor if name == UNET else 1
        top = vae_batch if name == VAE_DECODER else max_batch_size * factor
        corners = (
            point(1, min(widths), min(heights)),
            point(min(opt_batch * factor, top), *opt_size),
            point(top, max(widths), max(heights)),
        )
        rows = [(t.name, *(t.concrete(c) for c in corners)) for t in spec.inputs]
        profiles[name] = Profile(tuple(rows))
    return profiles
