"""Prompt -> tokens -> text embeddings -> sampler -> VAE decode -> images, with stage timings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPTokenizer

from scott.backend import DiffusionBackend, ModuleBackend
from scott.images import to_uint8
from scott.models import SERVING_FILE, ModelBundle, ServingCard, read_scheduler_config
from scott.sampler import (
    ConsistencySampler,
    ModelFn,
    Sampler,
    classifier_free_guidance,
    draw_noise,
    sample_generators,
)
from scott.schedule import NoiseSchedule, guidance_scale_embedding
from scott.tokenizer import load_tokenizer, token_counts, tokenize

CONSISTENCY = ConsistencySampler()
MAX_STEPS = CONSISTENCY.max_steps  # what the served few-step sampler takes


@dataclass(frozen=True)
class ModelInfo:
    """What a served model supports; request validation and defaults read it."""

    name: str
    latent_channels: int
    vae_scale_factor: int
    default_size: int
    size_multiple: int  # width and height must be multiples of this (VAE factor x UNet downsampling)
    min_size: int
    max_size: int
    guidance_embedding_dim: int | None  # LCM-style UNets take w as an embedding; None: true CFG
    max_prompt_tokens: int
    default_steps: int = 4
    default_guidance_scale: float = 1.0
    default_gamma: float = 0.3
    decoder: str = "full"  # full (the VAE's decoder) | tiny (an AutoencoderTiny: scott.decoder)
    # From the folder's serving.json (with_card): the sides it serves well (None: every side check_size's range
    # allows) and example prompts in its vocabulary.
    sizes: tuple[int, ...] | None = None
    examples: tuple[str, ...] = ()

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, name: str | None = None) -> ModelInfo:
        factor = bundle.vae_scale_factor
        multiple = factor * 2 ** (len(bundle.unet.config.block_out_channels) - 1)
        size = bundle.default_size
        dim = bundle.unet.config.time_cond_proj_dim
        return cls(
            name=name or (bundle.path.name if bundle.path else "unnamed"),
            latent_channels=int(bundle.unet.config.in_channels),
            vae_scale_factor=factor,
            default_size=size,
            size_multiple=multiple,
            min_size=max(multiple, size // 2),
            max_size=size * 2,
            guidance_embedding_dim=int(dim) if dim is not None else None,
            max_prompt_tokens=int(bundle.tokenizer.model_max_length),
            # A guidance-embedded student was distilled for w > 1; plain CFG doubles the cost, so off.
            default_guidance_scale=8.0 if dim is not None else 1.0,
            decoder="tiny" if bundle.tiny_decoder is not None else "full",
        )

    def model_facts(self) -> dict:
        """The fields a cached ONNX export or engine index records: the model's own, not its folder's serving card
        (sizes, examples), which load_pipeline applies anew from serving.json on every load."""
        return {k: v for k, v in asdict(self).items() if k not in ("sizes", "examples")}

    def with_card(self, card: ServingCard) -> ModelInfo:
        """This info with a model folder's serving card; ValueError if it declares a size the model cannot make,
        or leaves out the default size."""
        sizes = card.sizes
        if sizes is not None:
            unmade = [side for side in sizes if self._shape_problem("size", side)]
            if unmade:
                raise ValueError(
                    f"{SERVING_FILE}: sizes {unmade} cannot be made: each must be a multiple of "
                    f"{self.size_multiple} between {self.min_size} and {self.max_size}"
                )
            if self.default_size not in sizes:
                raise ValueError(f"{SERVING_FILE}: sizes must include the default size {self.default_size}")
        return replace(self, sizes=sizes, examples=card.examples)

    def _shape_problem(self, label: str, side: int) -> str | None:
        if not self.min_size <= side <= self.max_size or side % self.size_multiple:
            return (
                f"{label} {side} is not supported: must be a multiple of {self.size_multiple} "
                f"between {self.min_size} and {self.max_size}"
            )
        return None

    def check_size(self, width: int, height: int) -> str | None:
        """None if the model serves images of this size, else what is wrong with it: a side the model cannot
        make, or one its folder does not declare among the sizes it serves well."""
        for label, side in (("width", width), ("height", height)):
            if self.sizes is not None and side not in self.sizes:
                return f"{label} {side} is not supported: must be one of {', '.join(map(str, self.sizes))}"
            problem = self._shape_problem(label, side)
            if problem:
                return problem
        return None


@dataclass(frozen=True)
class ImageRequest:
    """One image to make. Requests with the same batch_key can share UNet calls."""

    prompt: str
    seed: int
    steps: int
    guidance_scale: float
    gamma: float
    width: int
    height: int

    @property
    def batch_key(self) -> tuple[int, int, int]:
        # Guidance, gamma, seed and prompt are per-sample in the sampler; only the number of
        # UNet calls and the latent shape must match.
        return (self.steps, self.width, self.height)


@dataclass
class StageTimings:
    """Seconds spent per stage for one batch."""

    text: float = 0.0
    unet: float = 0.0
    vae: float = 0.0

    @property
    def total(self) -> float:
        return self.text + self.unet + self.vae


@dataclass
class GenerationOutput:
    images: np.ndarray  # (B, H, W, 3) uint8
    timings: StageTimings
    prompt_truncated: list[bool] = field(default_factory=list)


class TextToImagePipeline:
    """Runs batches of ImageRequests through one backend and one sampler. Stateless between calls."""

    def __init__(
        self,
        backend: DiffusionBackend,
        tokenizer: CLIPTokenizer,
        schedule: NoiseSchedule,
        info: ModelInfo,
        sampler: Sampler = CONSISTENCY,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.schedule = schedule
        self.info = info
        self.sampler = sampler
        self._empty_prompt: torch.Tensor | None = None  # cached for classifier-free guidance

    @classmethod
    def from_bundle(
        cls, bundle: ModelBundle, sampler: Sampler = CONSISTENCY, device: torch.device | str = "cpu"
    ) -> TextToImagePipeline:
        """The bundle's own modules, eagerly (e.g. a teacher during training, with DDIMSampler)."""
        backend = ModuleBackend(bundle, device)
        return cls(backend, bundle.tokenizer, bundle.schedule, ModelInfo.from_bundle(bundle), sampler)

    @classmethod
    def over_folder(cls, backend: DiffusionBackend, model_dir: str | Path, info: ModelInfo) -> TextToImagePipeline:
        """A backend that runs the folder's networks from an export or engines, with the folder's own tokenizer and
        noise schedule (the networks' weights are never loaded into torch)."""
        root = Path(model_dir)
        return cls(
            backend, load_tokenizer(root / "tokenizer"), NoiseSchedule.from_config(read_scheduler_config(root)), info
        )

    # -- text -------------------------------------------------------------------------------------

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, list[bool]]:
        """Token ids padded to the encoder's window, and whether each prompt had to be truncated."""
        counts = token_counts(self.tokenizer, prompts)
        return tokenize(self.tokenizer, prompts), [n > self.info.max_prompt_tokens for n in counts]

    def count_tokens(self, prompt: str) -> int:
        return token_counts(self.tokenizer, [prompt])[0]

    def _encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, list[bool]]:
        ids, truncated = self.tokenize(prompts)
        return self.backend.encode_text(ids.to(self.backend.device)), truncated

    def _empty_prompt_embedding(self) -> torch.Tensor:
        if self._empty_prompt is None:
            self._empty_prompt, _ = self._encode([""])
        return self._empty_prompt

    # -- generation -------------------------------------------------------------------------------

    def generate(self, requests: Sequence[ImageRequest]) -> GenerationOutput:
        """Make one image per request; all requests must share a batch_key."""
        timings = StageTimings()
        clean, truncated = self._sample(requests, timings)
        start = time.perf_counter()
        images = self.backend.decode(clean)
        pixels = to_uint8(images)
        timings.vae = time.perf_counter() - start
        return GenerationOutput(images=pixels, timings=timings, prompt_truncated=truncated)

    def sample_latents(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        """The clean latents generate() would decode, (B, C, h, w) float32 (e.g. to train a decoder on them)."""
        return self._sample(requests, StageTimings())[0]

    def _sample(self, requests: Sequence[ImageRequest], timings: StageTimings) -> tuple[torch.Tensor, list[bool]]:
        """Text encoding and the sampler's UNet calls, timed into `timings`: (clean latents, prompts truncated)."""
        if not requests:
            raise ValueError("generate needs at least one request")
        keys = {r.batch_key for r in requests}
        if len(keys) != 1:
            raise ValueError(f"requests in one batch must share (steps, width, height), got {sorted(keys)}")
        steps, width, height = keys.pop()
        if not 1 <= steps <= self.sampler.max_steps:
            raise ValueError(f"steps must be in [1, {self.sampler.max_steps}], got {steps}")
        problem = self.info.check_size(width, height)
        if problem:
            raise ValueError(problem)

        backend, device = self.backend, self.backend.device
        batch = len(requests)

        start = time.perf_counter()
        text, truncated = self._encode([r.prompt for r in requests])
        guidance = torch.tensor([r.guidance_scale for r in requests], dtype=torch.float32)
        model = self._guided_model(text, guidance)
        backend.synchronize()
        timings.text = time.perf_counter() - start

        start = time.perf_counter()
        factor = self.info.vae_scale_factor
        generators = sample_generators([r.seed for r in requests])
        latent_shape = (self.info.latent_channels, height // factor, width // factor)
        noise = draw_noise(generators, latent_shape, self.sampler.noise_draws(steps), device)
        timesteps = self.sampler.timesteps(self.schedule, steps).repeat(batch, 1)
        gamma = torch.tensor([r.gamma for r in requests], dtype=torch.float32)
        clean = self.sampler.sample(model, self.schedule, timesteps, noise, gamma)
        backend.synchronize()
        timings.unet = time.perf_counter() - start
        return clean, truncated

    def _guided_model(self, text: torch.Tensor, guidance: torch.Tensor) -> ModelFn:
        """The sampler's model function: one UNet call with a guidance embedding, or true CFG."""
        backend, device = self.backend, self.backend.device
        dim = self.info.guidance_embedding_dim
        if dim is not None:
            cond = guidance_scale_embedding(guidance, dim).to(device)
            return lambda z, t: backend.predict(z, t, text, cond)
        # The empty prompt is encoded (once) only when some sample is really guided.
        uncond = self._empty_prompt_embedding() if bool((guidance != 1.0).any()) else text
        return classifier_free_guidance(
            lambda z, t, context: backend.predict(z, t, context, None), text, uncond, guidance.to(device)
        )
