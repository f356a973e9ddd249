"""POST /generate on the real app over real HTTP: JSON and PNG responses, seeds, defaults, truncation."""

from __future__ import annotations

import base64
import io
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def client(live_server) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=60.0) as client:
        yield client


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image)


def test_accept_png_returns_the_image_itself(client: httpx.Client) -> None:
    response = client.post("/generate", json={"prompt": "a red circle", "seed": 5}, headers={"Accept": "image/png"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "5"
    assert response.headers["x-prompt-truncated"] == "false"
    assert "unet;dur=" in response.headers["server-timing"]
    assert decode(response.content).shape == (64, 64, 3)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
def test_the_readme_curl_works(live_server) -> None:
    """The README's curl names its JSON content type (a bare `curl -d` sends a form type, refused with 415)."""
    import subprocess

    command = ["curl", "-s", "-X", "POST", f"{live_server.url}/generate", "-H", "Accept: image/png"]
    command += ["-H", "Content-Type: application/json", "-d", '{"prompt":"a red circle"}']
    done = subprocess.run(command, capture_output=True, timeout=60, check=True)
    assert decode(done.stdout).shape == (64, 64, 3)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/generate", None),
        ("/generate", "application/x-www-form-urlencoded"),  # what a cross-site <form> posts, and bare curl -d
        ("/generate", "multipart/form-data; boundary=x"),
        ("/generate", "text/plain"),
        ("/v1/images/generations", "application/x-www-form-urlencoded"),
    ],
)
def test_bodies_not_declared_json_get_415_naming_the_content_type(
    client: httpx.Client, path: str, content_type: str | None
) -> None:
    """Before, a form post was read as JSON: any web page could make its visitors' browsers generate here."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(path, content=b'{"prompt": "a red circle", "seed": 1}', headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("unsupported_media_type", "content-type")
    assert "application/json" in error["message"]


def test_a_json_type_with_parameters_is_json(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = client.post("/generate", content=b'{"prompt": "a red circle", "steps": 1}', headers=headers)
    assert response.status_code == 200, response.text


def test_json_carries_base64_pngs_of_the_asked_size_with_seeds_and_timings(client: httpx.Client) -> None:
    body = {"prompt": "a blue square", "seed": 40, "num_images": 3, "width": 96, "height": 48, "steps": 2}
    response = client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert [image["seed"] for image in data["images"]] == [40, 41, 42]
    for image in data["images"]:
        assert decode(base64.b64decode(image["b64_png"])).shape == (48, 96, 3)
    assert (data["width"], data["height"], data["steps"]) == (96, 48, 2)
    assert data["prompt_truncated"] is False
    assert sum(data["batch_sizes"]) >= 3
    timings = data["timings"]
    assert set(timings) == {"queue", "text", "unet", "vae", "encode", "total"}
    assert timings["total"] >= timings["unet"] > 0
    # Different seeds make different images.
    first, second = (decode(base64.b64decode(image["b64_png"])) for image in data["images"][:2])
    assert not np.array_equal(first, second)


def test_defaults_come_from_the_model(client: httpx.Client, tiny_pipeline) -> None:
    info = tiny_pipeline.info
    data = client.post("/generate", json={"prompt": "defaults"}).json()
    assert (data["width"], data["height"]) == (info.default_size, info.default_size)
    assert data["steps"] == info.default_steps
    assert data["guidance_scale"] == info.default_guidance_scale
    assert data["gamma"] == info.default_gamma
    assert data["model"] == "scott-tiny"


def test_an_omitted_seed_is_random_and_returned_and_reproduces_the_image(client: httpx.Client) -> None:
    png = {"Accept": "image/png"}
    first = client.post("/generate", json={"prompt": "random seed"}, headers=png)
    second = client.post("/generate", json={"prompt": "random seed"}, headers=png)
    assert first.headers["x-seed"] != second.headers["x-seed"]
    again = client.post("/generate", json={"prompt": "random seed", "seed": int(first.headers["x-seed"])}, headers=png)
    assert again.content == first.content  # both ran alone: the same batch size, so bit-identical


def test_a_prompt_past_the_token_window_is_truncated_and_says_so(client: httpx.Client) -> None:
    data = client.post("/generate", json={"prompt": "a very long prompt " * 40, "steps": 1}).json()
    assert data["prompt_truncated"] is True
    short = client.post("/generate", json={"prompt": "short", "steps": 1}, headers={"Accept": "image/png"})
    assert short.headers["x-prompt-truncated"] == "false"


def test_accept_png_with_several_images_is_406_naming_num_images(client: httpx.Client) -> None:
    response = client.post("/generate", json={"prompt": "x", "num_images": 2}, headers={"Accept": "image/png"})
    assert response.status_code == 406
    assert response.json()["error"]["field"] == "num_images"


def test_accept_negotiation_prefers_the_higher_q(client: httpx.Client) -> None:
    body = {"prompt": "q values", "seed": 1, "steps": 1}
    json_first = client.post("/generate", json=body, headers={"Accept": "image/png;q=0.5, application/json"})
    assert json_first.headers["content-type"].startswith("application/json")
    png_first = client.post("/generate", json=body, headers={"Accept": "image/png, */*;q=0.1"})
    assert png_first.headers["content-type"] == "image/png"


def test_nan_pixels_are_a_500_counted_on_metrics_never_a_black_png(tiny_pipeline, monkeypatch) -> None:
    """An fp16 overflow in the VAE gives NaN: clamped to uint8 it was a black PNG with 200. Now the request fails
    with its own error type, /metrics counts it, and the server goes on serving."""
    import threading

    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    poisoned = threading.Event()
    real_decode = tiny_pipeline.backend.decode

    def decode(latents):
        images = real_decode(latents)
        return images * float("nan") if poisoned.is_set() else images

    monkeypatch.setattr(tiny_pipeline.backend, "decode", decode)
    with BackgroundServer(create_app(ServerSettings(), pipeline=tiny_pipeline)) as server:
        poisoned.set()
        failed = httpx.post(f"{server.url}/generate", json={"prompt": "x", "steps": 1, "num_images": 2}, timeout=60)
        poisoned.clear()
        served = httpx.post(f"{server.url}/generate", json={"prompt": "x", "steps": 1}, timeout=60)
        metrics = httpx.get(f"{server.url}/metrics").text
    assert failed.status_code == 500, failed.text
    error = failed.json()["error"]
    assert error["type"] == "nonfinite_output" and "2 of 2 images" in error["message"] and "NaN" in error["message"]
    assert "/" not in error["message"].replace("--precision f32", "")  # no server paths
    assert "scott_nonfinite_outputs_total 1.0" in metrics
    assert served.status_code == 200


def test_to_uint8_refuses_nan_and_inf() -> None:
    import torch

    from scott.images import NonFiniteImages, to_uint8

    images = torch.zeros(3, 3, 4, 4)
    assert to_uint8(images).shape == (3, 4, 4, 3)
    images[1, 0, 0, 0] = float("inf")
    images[2, 2, 3, 3] = float("nan")
    with pytest.raises(NonFiniteImages, match="2 of 3 images"):
        to_uint8(images)
