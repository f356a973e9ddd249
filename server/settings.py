"""Server settings: SCOTT_* environment variables and `scott serve` flags, one validated object.

Every field is a flag of `scott serve` (server/flags.py makes them: name, type and help from the field), so a
setting is declared once, here, with its description as its help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engines.load_options import DEFAULT_MAX_BATCH_SIZE, LoadOptions
from scott.precision import Precision
from server.limits import MAX_IMAGES


class ServerSettings(BaseSettings):
    """Everything a running server reads; e.g. SCOTT_MAX_BATCH_SIZE=4 sets max_batch_size (a flag given wins)."""

    model_config = SettingsConfigDict(env_prefix="SCOTT_", protected_namespaces=(), extra="ignore")

    model_dir: Path = Field(Path("models/scott-tiny"), description="diffusers-format model folder")
    model_name: str | None = Field(None, description="name served in /v1/models; default: the folder name")
    backend: str | None = Field(
        None, description="runtime: torch | onnx | openvino | tensorrt; default: openvino on the CPU, torch on CUDA"
    )
    precision: Precision = Field(
        Precision.AUTO,
        description="auto (bf16 where the CPU has it natively on openvino, f16 on CUDA) | f32 | bf16 | f16",
    )
    vae_precision: Precision | None = Field(
        None, description="tensorrt: the VAE decoder's precision, f32 | f16 (f32 guards against overflow)"
    )
    decoder: str = Field(
        "full",
        min_length=1,
        description="full (the model's VAE) | tiny (the model folder's vae_tiny/) | DIR (an AutoencoderTiny folder)",
    )
    compile: bool = Field(False, description="torch: torch.compile the networks (first start slow, then cached)")
    device: str | None = Field(None, description="e.g. cpu, cuda, cuda:1; default: CUDA when present")
    threads: int | None = Field(None, ge=1, le=1024, description="CPU inference threads; default: one per core")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    max_batch_size: int = Field(
        DEFAULT_MAX_BATCH_SIZE, ge=1, le=256, description="images per UNet batch; 1 turns batching off"
    )
    max_wait_ms: float = Field(5.0, ge=0.0, le=10_000.0, description="batch wait for company, under concurrency")
    max_queue: int = Field(64, ge=1, description="images admitted but not yet running; more get 429")
    request_timeout_s: float = Field(30.0, gt=0.0, description="deadline of every request; past it, 504")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="largest request body; a larger one gets 413")
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="largest request line plus headers; a larger one gets 431"
    )
    receive_timeout_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="time to receive a request's headers and body; a slower client gets 408"
    )
    # Facing a network (README "Running it on a network"). Keys come from the environment or a file, never a
    # flag (a command line is visible to every user of the host); SecretStr keeps them out of reprs and logs.
    api_keys: SecretStr | None = Field(
        None, description="comma-separated API keys; when any is set, model routes need Authorization: Bearer KEY"
    )
    api_key_file: Path | None = Field(None, description="a file of API keys, one per line (# starts a comment)")
    max_concurrent_per_key: int | None = Field(
        None, ge=1, description="requests one API key may have in flight; more get 429"
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        [], description="Host header values served (comma-separated, *.example.com allowed); default: any"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="browser origins allowed to call the API (comma-separated, or *); default: none"
    )
    encode_threads: int = Field(2, ge=1, le=64, description="threads that PNG-encode, off the inference thread")
    warmup: bool = Field(True, description="generate before readiness passes (every batch size on per-shape backends)")
    # Shutdown on SIGTERM: readiness fails at once, requests are still served for drain_seconds (so a load
    # balancer can stop routing here), then new requests get 503 and in-flight ones finish, up to drain_timeout_s.
    # An orchestrator's grace period (Kubernetes terminationGracePeriodSeconds) should exceed the sum of the two.
    drain_seconds: float = Field(
        0.0, ge=0.0, le=600.0, description="after SIGTERM, keep serving this long with readiness failing"
    )
    drain_timeout_s: float = Field(30.0, ge=0.0, description="how long shutdown waits for in-flight requests")
    log_level: str = Field("info", description="uvicorn log level: critical | error | warning | info | debug | trace")

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        parts = value.split(",") if isinstance(value, str) else value
        if isinstance(parts, list | tuple):
            return [item.strip() for part in parts for item in str(part).split(",") if item.strip()]
        return parts

    @field_validator("precision", "vae_precision", mode="before")
    @classmethod
    def _precision_name(cls, value: object) -> object:
        return Precision.parse(value) if isinstance(value, str) else value  # names it wrongly: the listed choices

    @model_validator(mode="after")
    def _loadable(self) -> Self:
        self.load_options()  # a flag combination no backend can run fails at start, naming the flags
        return self

    def load_options(self) -> LoadOptions:
        """What the model loader reads (engines.loader.load_pipeline): made here, from these settings only."""
        return LoadOptions(
            backend=self.backend,
            device=self.device,
            precision=self.precision,
            max_batch_size=self.max_batch_size,
            threads=self.threads,
            vae_precision=self.vae_precision,
            compile=self.compile,
            decoder=self.decoder,
        )

    @model_validator(mode="after")
    def _queue_fits_a_request(self) -> Self:
        # A request of MAX_IMAGES must be admissible into an empty queue, or it could never run.
        if self.max_queue < MAX_IMAGES:
            raise ValueError(f"max_queue must be at least {MAX_IMAGES} (the most images one request may ask for)")
        return self

    @model_validator(mode="after")
    def _api_keys_readable(self) -> Self:
        self.api_key_values()  # a missing or empty key file fails at start, naming the flag
        return self

    def api_key_values(self) -> tuple[bytes, ...]:
        """SCOTT_API_KEYS (comma-separated) and the lines of api_key_file (blank lines and # comments skipped)."""
        keys = self.api_keys.get_secret_value().split(",") if self.api_keys else []
        if self.api_key_file is not None:
            try:
                text = self.api_key_file.read_text(encoding="utf-8")
            except OSError as exc:  # the file's name and the reason, never its contents
                raise ValueError(f"api_key_file: cannot read {self.api_key_file.name}: {exc.strerror}") from exc
            keys += [line.split("#", 1)[0] for line in text.splitlines()]
            if not any(key.strip() for key in keys):
                raise ValueError(f"api_key_file: {self.api_key_file.name} holds no key")
        return tuple(dict.fromkeys(key.strip().encode() for key in keys if key.strip()))

    @property
    def served_model_name(self) -> str:
        return self.model_name or self.model_dir.resolve().name
