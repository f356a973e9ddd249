"""Bad input over real HTTP: every case is a 4xx JSON error naming the field and its limit, and never runs."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def client(live_server) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=30.0) as client:
        yield client


def images_generated(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("scott_images_generated_total "):
            return float(line.split()[1])
    raise AssertionError("scott_images_generated_total missing")


# (body, status, field, words the message must contain: the limit or the reason)
BAD_BODIES = [
    ({"prompt": ""}, 422, "prompt", ["at least 1 character"]),
    ({"prompt": "   "}, 422, "prompt", ["whitespace"]),
    ({"prompt": "x" * 2001}, 422, "prompt", ["2000"]),
    ({}, 422, "prompt", ["required"]),
    ({"prompt": 7}, 422, "prompt", ["string"]),
    ({"prompt": "x", "steps": 0}, 422, "steps", ["greater than or equal to 1"]),
    ({"prompt": "x", "steps": 5}, 422, "steps", ["less than or equal to 4"]),
    ({"prompt": "x", "steps": "four"}, 422, "steps", ["integer"]),
    ({"prompt": "x", "steps": 2.5}, 422, "steps", ["integer"]),
    ({"prompt": "x", "steps": True}, 422, "steps", ["integer"]),  # not 1
    ({"prompt": "x", "seed": "7"}, 422, "seed", ["integer"]),
    ({"prompt": "x", "guidance_scale": False}, 422, "guidance_scale", ["number"]),
    ({"prompt": "x", "num_images": True}, 422, "num_images", ["integer"]),
    ({"prompt": "x", "seed": -1}, 422, "seed", ["greater than or equal to 0"]),
    ({"prompt": "x", "seed": 2**32}, 422, "seed", ["4294967295"]),
    ({"prompt": "x", "guidance_scale": 21}, 422, "guidance_scale", ["20"]),
    ({"prompt": "x", "guidance_scale": -0.5}, 422, "guidance_scale", ["greater than or equal to 0"]),
    ({"prompt": "x", "gamma": 1.5}, 422, "gamma", ["less than or equal to 1"]),
    ({"prompt": "x", "gamma": "high"}, 422, "gamma", ["number"]),
    ({"prompt": "x", "num_images": 0}, 422, "num_images", ["greater than or equal to 1"]),
    ({"prompt": "x", "num_images": 9}, 422, "num_images", ["less than or equal to 8"]),
    ({"prompt": "x", "width": 100}, 422, "width", ["multiple of 16", "between 32 and 128"]),
    ({"prompt": "x", "height": 256}, 422, "height", ["between 32 and 128"]),
    ({"prompt": "x", "width": 16}, 422, "width", ["between 32 and 128"]),
    ({"prompt": "x", "width": 100000}, 422, "width", ["4096"]),
    ({"prompt": "x", "timeout_ms": 0}, 422, "timeout_ms", ["greater than or equal to 1"]),
    ({"prompt": "x", "stepz": 2}, 422, "stepz", ["not a known field"]),
    (["a", "list"], 422, "body", ["dictionary"]),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), BAD_BODIES, ids=[str(b)[:40] for b, *_ in BAD_BODIES])
def test_bad_input_names_the_field_and_the_limit(
    client: httpx.Client, body: object, status: int, field: str, words: list[str]
) -> None:
    response = client.post("/generate", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["type"] == "invalid_request"
    for word in words:
        assert word in error["message"], error["message"]
    assert error["errors"][0]["field"] == field


def test_malformed_json_is_400_on_the_body(client: httpx.Client) -> None:
    response = client.post("/generate", content=b'{"prompt": "x",', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    assert "not valid JSON" in response.json()["error"]["message"]


def test_an_oversized_body_is_413_whether_declared_or_chunked(client: httpx.Client) -> None:
    big = b'{"prompt": "' + b"a" * 70_000 + b'"}'
    declared = client.post("/generate", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["error"] == {
        "type": "payload_too_large",
        "message": "body: request body exceeds 65536 bytes",
        "field": "body",
        "errors": [{"field": "body", "message": "body: request body exceeds 65536 bytes"}],
    }

    def chunks():  # no Content-Length: the limit must count the bytes as they arrive
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    chunked = httpx.post(
        client.base_url.join("/generate"), content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    assert chunked.json()["error"]["field"] == "body"


def test_invalid_requests_never_reach_the_worker_and_the_server_keeps_serving(client: httpx.Client) -> None:
    before = images_generated(client)
    for body, *_ in BAD_BODIES:
        assert 400 <= client.post("/generate", json=body).status_code < 500
    assert images_generated(client) == before
    ok = client.post("/generate", json={"prompt": "still fine", "steps": 1}, headers={"Accept": "image/png"})
    assert ok.status_code == 200
    assert images_generated(client) == before + 1


def test_unknown_routes_and_methods_use_the_same_error_format(client: httpx.Client) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    wrong = client.get("/generate")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "method_not_allowed"


# The shipped model's serving.json declares 64 only: every route refuses other sizes with the same 422.
SHIPPED_BAD_SIZES = [
    ("/generate", {"prompt": "a red circle", "width": 128}, "width"),
    ("/generate", {"prompt": "a red circle", "height": 128}, "height"),
    ("/generate", {"prompt": "a red circle", "width": 96, "height": 96}, "width"),  # one the model can make
    ("/v1/images/generations", {"prompt": "a red circle", "size": "128x128"}, "size"),
    ("/sdapi/v1/txt2img", {"prompt": "a red circle", "width": 64, "height": 128}, "height"),
]


@pytest.mark.parametrize(
    ("path", "body", "field"), SHIPPED_BAD_SIZES, ids=[f"{p} {b}" for p, b, _ in SHIPPED_BAD_SIZES]
)
def test_the_shipped_model_serves_only_its_declared_size(shipped_server, path: str, body: dict, field: str) -> None:
    response = httpx.post(shipped_server.url + path, json=body, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("invalid_request", field)
    assert "must be one of 64" in error["message"], error["message"]


def test_the_shipped_models_size_is_served_and_is_the_only_one_in_the_spec(shipped_server) -> None:
    ok = httpx.post(
        shipped_server.url + "/generate",
        json={"prompt": "a large green circle in the center on a black background", "steps": 1, "width": 64},
        headers={"Accept": "image/png"},
        timeout=60,
    )
    assert ok.status_code == 200 and ok.content.startswith(b"\x89PNG")
    models = httpx.get(shipped_server.url + "/openapi.json").json()["components"]["schemas"]
    for model in ("GenerateRequest", "A1111Txt2ImgRequest"):
        for name in ("width", "height"):
            assert {"type": "integer", "enum": [64]} in models[model]["properties"][name]["anyOf"]
    size = next(branch for branch in models["OpenAIImageRequest"]["properties"]["size"]["anyOf"] if "enum" in branch)
    assert size["enum"] == ["auto", "64", "64x64"]
