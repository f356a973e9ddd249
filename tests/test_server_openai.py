"""The official `openai` client, unchanged, against the live server's OpenAI-compatible routes."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def client(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_images_generate_returns_b64_pngs(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a green triangle", n=2, size="64x64", response_format="b64_json")
    assert len(result.data) == 2
    for item in result.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert image.format == "PNG" and image.size == (64, 64)
    assert result.created > 0


def test_extensions_pass_through_extra_body_and_sizes_follow_the_model(client: openai.OpenAI) -> None:
    extra = {"seed": 3, "steps": 1, "gamma": 0.0}
    result = client.images.generate(prompt="a wide banner", size="128x64", model="scott-tiny", extra_body=extra)
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (128, 64)
    again = client.images.generate(prompt="a wide banner", size="128x64", extra_body=extra)
    assert again.data[0].b64_json == result.data[0].b64_json


def test_a_size_of_one_side_is_square(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a square", size="96", extra_body={"steps": 1})  # type: ignore[arg-type]
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (96, 96)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == ["scott-tiny"]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"response_format": "url"}, openai.BadRequestError, "b64_json"),
        ({"size": "1024x1024"}, openai.UnprocessableEntityError, "between 32 and 128"),
        ({"size": "big"}, openai.UnprocessableEntityError, "WIDTHxHEIGHT"),  # one status for every bad size
        ({"size": "12x"}, openai.UnprocessableEntityError, "WIDTHxHEIGHT or SIDE"),
        ({"n": 9}, openai.UnprocessableEntityError, "less than or equal to 8"),
        ({"model": "dall-e-3"}, openai.NotFoundError, "scott-tiny"),
        ({"output_format": "jpeg"}, openai.BadRequestError, "png"),
    ],
)
def test_unsupported_options_are_clear_errors(client: openai.OpenAI, kwargs: dict, error: type, words: str) -> None:
    with pytest.raises(error) as caught:
        client.images.generate(prompt="x", **kwargs)
    assert words in str(caught.value)


@pytest.mark.parametrize(("field", "status"), [("response_format", 400), ("size", 422)])
def test_the_error_body_names_the_field(live_server, field: str, status: int) -> None:
    body = {"prompt": "x", "response_format": "url"} if field == "response_format" else {"prompt": "x", "size": "12x"}
    response = httpx.post(live_server.url + "/v1/images/generations", json=body, timeout=30)
    assert response.status_code == status
    assert response.json()["error"]["field"] == field
