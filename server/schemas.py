"""The HTTP protocol: request and response models of every route (their static limits: server.limits)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

from scott.pipeline import MAX_STEPS
from server.limits import (
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MAX_TIMEOUT_MS,
    MAX_UNKNOWN_FIELDS,
    NOT_BLANK,
    clip,
)

# -- types ----------------------------------------------------------------------------------------


class JsonNumbers(BaseModel):
    """Numbers as JSON Schema reads them: 2.0 is the integer 2. Fields stay strict: true is not 1, "4" is not 4."""

    @field_validator("*", mode="before")
    @classmethod
    def _integral_floats(cls, value: object) -> object:
        return int(value) if isinstance(value, float) and value.is_integer() else value


class KnownFieldsOnly(BaseModel):
    """A body of the model's own fields: an unknown one is refused by name (extra="forbid"). A body with more than
    MAX_UNKNOWN_FIELDS unknown ones is refused whole, with one error on `body` that counts them and names the first
    few, before pydantic makes an error of each key (64 KB of unknown keys was ~8,000 errors, ~20 ms of event loop)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _not_a_flood_of_unknown_fields(cls, data: object) -> object:
        if isinstance(data, dict) and len(data) > MAX_UNKNOWN_FIELDS:  # fewer keys cannot be too many unknown ones
            known = cls.model_fields.keys() | {field.alias for field in cls.model_fields.values() if field.alias}
            unknown = [key for key in data if key not in known]
            if len(unknown) > MAX_UNKNOWN_FIELDS:
                first = ", ".join(clip(str(key)) for key in unknown[:3])
                # the text as it is, no context: pydantic would fill a "{...}" in a key the client chose
                raise PydanticCustomError(
                    "too_many_unknown_fields",
                    f"{len(unknown)} unknown fields (more than {MAX_UNKNOWN_FIELDS} are refused unlisted); "
                    f"the first 3: {first}",
                )
        return data


SIZE_HELP = "one of the model's sizes (GET /info: sizes); else 422"
# server.params.ImageRequests.seeds: the one rule, said in the spec of every field that takes or returns a seed.
SEED_RULE = (
    f"image i of a request has seed (seed + i) mod 2^32 (after {MAX_SEED} comes 0), so every seed returned is "
    "accepted back and, sent alone, makes that image again"
)


def only(value: object, nullable: bool = True) -> WithJsonSchema:
    """The spec offers just `value` (or null) for a field whose other values are refused with an explanation."""
    return WithJsonSchema({"anyOf": [{"const": value}, {"type": "null"}]} if nullable else {"const": value})


# -- what every image route takes -----------------------------------------------------------------


class SamplingFields(JsonNumbers):
    """The prompt and the sampler's knobs, the same on every image route; omitted ones take the model's defaults.

    Numbers are strict (JsonNumbers): `true` is not 1 and "4" is not 4; integers stay valid where a float is asked
    for."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": NOT_BLANK})
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, strict=True)
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description=f"omitted: a random seed, returned; {SEED_RULE}", strict=True
    )
    guidance_scale: float | None = Field(None, ge=0.0, le=MAX_GUIDANCE, allow_inf_nan=False, strict=True)
    gamma: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False, strict=True)

    def sampling(self) -> dict[str, Any]:
        """These fields alone, as keywords of server.params.resolve."""
        return {name: getattr(self, name) for name in SamplingFields.model_fields}


# -- /generate ------------------------------------------------------------------------------------


class GenerateRequest(SamplingFields, KnownFieldsOnly):
    """POST /generate. Omitted fields take the model's defaults; image i uses (seed + i) mod 2^32."""

    num_images: int = Field(1, ge=1, le=MAX_IMAGES, strict=True)
    width: int | None = Field(None, ge=1, le=MAX_SIDE, description=SIZE_HELP, strict=True)
    height: int | None = Field(None, ge=1, le=MAX_SIDE, description=SIZE_HELP, strict=True)
    timeout_ms: int | None = Field(
        None, ge=1, le=MAX_TIMEOUT_MS, description="capped by the server's deadline", strict=True
    )


class GeneratedImage(BaseModel):
    b64_png: str
    seed: int = Field(description=SEED_RULE)


class Timings(BaseModel):
    """Seconds. Stage times are of the batches the request's images ran in (shared with batch mates)."""

    queue: float
    text: float
    unet: float
    vae: float
    encode: float
    total: float


class GenerateResponse(BaseModel):
    model: str
    images: list[GeneratedImage]
    width: int
    height: int
    steps: int
    guidance_scale: float
    gamma: float
    prompt_truncated: bool = Field(description="the prompt was longer than the text encoder's window")
    batch_sizes: list[int] = Field(description="size of each batch the request's images ran in")
    timings: Timings


# -- OpenAI Images API ----------------------------------------------------------------------------


class OpenAIImageRequest(SamplingFields):
    """POST /v1/images/generations, as the OpenAI Images API; steps, seed, guidance_scale, gamma are extensions."""

    # The official clients send fields this server has no use for (quality, style, user, ...): ignore them.
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model: str | None = Field(None, max_length=200)
    n: int | None = Field(None, ge=1, le=MAX_IMAGES, strict=True)
    size: str | None = Field(None, max_length=20, description="WIDTHxHEIGHT, SIDE (square) or auto")
    response_format: Annotated[Literal["b64_json", "url"] | None, only("b64_json")] = Field(
        None, description="b64_json only: `url` is refused with a 400 (this server keeps no files)"
    )
    output_format: Annotated[str | None, only("png")] = Field(None, max_length=10, description="png only")
    stream: Annotated[bool | None, only(False)] = Field(
        None, strict=True, description="false only: streaming is refused with a 400"
    )


class OpenAIImage(BaseModel):
    b64_json: str
    revised_prompt: str | None = None
    seed: int = Field(description=SEED_RULE)


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
    output_format: Literal["png"] = "png"
    size: str


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "scott"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# -- AUTOMATIC1111 web UI API --------------------------------------------------------------------

# The one sampler served, by the name A1111 clients are shown; any sampler_name they send runs it.
A1111_SAMPLER = "SCott consistency"


class A1111Txt2ImgRequest(JsonNumbers):
    """POST /sdapi/v1/txt2img as the A1111 clients send it (webuiapi, Open WebUI, SillyTavern).

    The many A1111 fields with no meaning here (subseeds, hires upscalers, face restoration, styles, scripts'
    args, save flags) are accepted and ignored; the ones that would change what is drawn are refused when set
    (enable_hr, tiling, script_name, refiner_checkpoint, another model in override_settings)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, json_schema_extra={"pattern": NOT_BLANK})
    negative_prompt: str = Field(
        "", max_length=MAX_PROMPT_CHARS, description="accepted and ignored: the model's guidance takes no negative"
    )
    seed: int = Field(
        -1,
        ge=-1,
        le=MAX_SEED,
        description=f"-1: a random seed; info's all_seeds has each image's: {SEED_RULE}",
        strict=True,
    )
    steps: int = Field(
        50,
        ge=1,
        le=1000,
        strict=True,
        description=f"more than the sampler's {MAX_STEPS} run {MAX_STEPS} (info says so)",
    )
    cfg_scale: float = Field(7.0, ge=0.0, le=MAX_GUIDANCE, allow_inf_nan=False, strict=True)
    # omitted: the model's default size (A1111's own default, 512, is a size only of SD-1.5-class models)
    width: int | None = Field(None, ge=1, le=MAX_SIDE, description=SIZE_HELP, strict=True)
    height: int | None = Field(None, ge=1, le=MAX_SIDE, description=SIZE_HELP, strict=True)
    batch_size: int = Field(1, ge=1, le=MAX_IMAGES, strict=True)
    n_iter: int = Field(
        1,
        ge=1,
        le=MAX_IMAGES,
        strict=True,
        description="batches of batch_size: all batch_size x n_iter images are admitted at once or refused before any "
        "is made; more than the server's max_queue (default 64) in one request is refused with a 422",
    )
    sampler_name: str | None = Field(None, max_length=200, description=f"any name runs {A1111_SAMPLER!r}")
    sampler_index: str | None = Field(None, max_length=200, description="A1111's old sampler_name; ignored too")
    gamma: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False, strict=True, description="extension")
    send_images: bool = Field(True, strict=True)
    enable_hr: Annotated[bool, only(False, nullable=False)] = Field(
        False, strict=True, description="true is refused: no hires fix here"
    )
    tiling: Annotated[bool | None, only(False)] = Field(
        None, strict=True, description="true is refused: no tiling here"
    )
    script_name: Annotated[str | None, only("")] = Field(
        None, max_length=200, description="refused when set: no scripts here"
    )
    refiner_checkpoint: Annotated[str | None, only("")] = Field(
        None, max_length=200, description="refused when set (null, '' and 'None' mean none): no refiner here"
    )
    override_settings: dict[str, Any] | None = Field(
        None,
        description="sd_model_checkpoint: the served model (GET /sdapi/v1/sd-models: title or model_name), another is "
        "refused with a 422; a key set to the value GET /sdapi/v1/options reports is honoured as it is; any other key "
        "is ignored and named in info's ignored_override_settings",
    )


class A1111Txt2ImgResponse(BaseModel):
    images: list[str] = Field(description=f"base64 PNGs (no data: prefix); {SEED_RULE}")
    parameters: dict[str, Any] = Field(description="the request's fields as received")
    info: str = Field(
        description="a JSON string, as A1111's: seed, all_seeds, steps used, infotexts, ...; "
        "ignored_override_settings: the override_settings keys that changed nothing"
    )


class A1111Model(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str  # the served name: never a server path
    config: str | None = None


class A1111Sampler(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str] = Field(default_factory=dict)


# -- errors ---------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    field: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: {"error": {"type", "message", "field", "errors"}}."""

    error: ErrorDetail
