"""The `webuiapi` client (AUTOMATIC1111's), unchanged, against the live server's /sdapi/v1 routes; then the
payload edges over plain HTTP: A1111's defaults, ignored fields, refusals that name the field, keys, metrics."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import webuiapi
from PIL import Image

from scott.pipeline import MAX_STEPS
from server.limits import MAX_SEED

KEY = "a1111-key-0123456789"


@pytest.fixture(scope="module")
def api(live_server) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(baseurl=live_server.url + "/sdapi/v1", sampler="Euler a", steps=20)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_txt2img_with_a1111_defaults_clamps_steps_and_reports_seeds(api: webuiapi.WebUIApi) -> None:
    result = api.txt2img(prompt="a red circle", seed=5, width=64, height=64, batch_size=2, n_iter=2, cfg_scale=7)
    assert len(result.images) == 4
    assert all(image.size == (64, 64) and image.format == "PNG" for image in result.images)
    info = result.info  # webuiapi parses the JSON string, as A1111's
    assert (info["seed"], info["all_seeds"]) == (5, [5, 6, 7, 8])
    assert info["steps"] == MAX_STEPS and info["extra_generation_params"]["Requested steps"] == 20
    assert (info["width"], info["height"], info["cfg_scale"], info["sd_model_name"]) == (64, 64, 7.0, "scott-tiny")
    assert len(info["infotexts"]) == 4 and "Seed: 8" in info["infotexts"][3]
    assert result.parameters["prompt"] == "a red circle" and result.parameters["steps"] == 20


def test_image_i_is_the_image_of_generate_with_seed_plus_i(api: webuiapi.WebUIApi, live_server) -> None:
    result = api.txt2img(prompt="a blue square", seed=11, steps=2, cfg_scale=8, width=64, height=64, batch_size=2)
    body = {"prompt": "a blue square", "seed": 12, "steps": 2, "guidance_scale": 8.0, "width": 64, "height": 64}
    alone = httpx.post(live_server.url + "/generate", json=body, headers={"Accept": "image/png"}, timeout=60)
    diff = np.abs(pixels(result.images[1]) - pixels(Image.open(io.BytesIO(alone.content))))
    assert diff.max() <= 2  # batch invariance: the same image inside a batch of 2 as alone


def test_seed_minus_one_is_random_and_returned(api: webuiapi.WebUIApi) -> None:
    first = api.txt2img(prompt="a star", seed=-1, steps=1, width=32, height=32)
    second = api.txt2img(prompt="a star", seed=-1, steps=1, width=32, height=32)
    assert first.info["seed"] != second.info["seed"] and first.info["seed"] >= 0


def test_read_only_routes_the_clients_call_first(api: webuiapi.WebUIApi) -> None:
    assert api.util_get_model_names() == ["scott-tiny"]
    assert api.util_get_current_model() == "scott-tiny"
    assert api.util_get_sampler_names() == ["SCott consistency"]
    assert api.get_options()["samples_format"] == "png"
    assert all("/" not in model["filename"] for model in api.get_sd_models())  # no server path


def test_an_unknown_size_is_a_clear_error_through_the_client(api: webuiapi.WebUIApi) -> None:
    with pytest.raises(RuntimeError) as caught:
        api.txt2img(prompt="x")  # A1111's 512x512 default: not a size of the tiny model
    status, text = caught.value.args
    assert status == 422
    assert json.loads(text)["error"]["field"] == "width"


# The payload A1111's own UI sends, ignored fields and all (from its /docs: StableDiffusionProcessingTxt2Img).
FULL_PAYLOAD = {
    "prompt": "a green triangle",
    "negative_prompt": "blurry, low quality",
    "styles": ["cinematic"],
    "seed": 3,
    "subseed": -1,
    "subseed_strength": 0,
    "seed_resize_from_h": -1,
    "seed_resize_from_w": -1,
    "sampler_name": "DPM++ 2M Karras",
    "scheduler": "karras",
    "batch_size": 1,
    "n_iter": 1,
    "steps": 30,
    "cfg_scale": 6.5,
    "width": 64,
    "height": 64,
    "restore_faces": False,
    "tiling": False,
    "do_not_save_samples": True,
    "do_not_save_grid": True,
    "eta": 0,
    "denoising_strength": 0.7,
    "s_min_uncond": 0,
    "s_churn": 0,
    "s_tmax": 0,
    "s_tmin": 0,
    "s_noise": 1,
    "override_settings": {"sd_model_checkpoint": "scott-tiny"},  # the model served (GET /sdapi/v1/sd-models)
    "override_settings_restore_afterwards": True,
    "refiner_checkpoint": None,
    "refiner_switch_at": 0,
    "disable_extra_networks": False,
    "firstpass_image": None,
    "comments": {},
    "enable_hr": False,
    "firstphase_width": 0,
    "firstphase_height": 0,
    "hr_scale": 2,
    "hr_upscaler": "Latent",
    "hr_second_pass_steps": 0,
    "hr_resize_x": 0,
    "hr_resize_y": 0,
    "hr_checkpoint_name": None,
    "hr_sampler_name": None,
    "hr_scheduler": None,
    "hr_prompt": "",
    "hr_negative_prompt": "",
    "force_task_id": None,
    "sampler_index": "Euler",
    "script_name": None,
    "script_args": [],
    "send_images": True,
    "save_images": False,
    "alwayson_scripts": {},
    "infotext": None,
}


def test_the_full_a1111_payload_is_accepted(live_server) -> None:
    response = httpx.post(live_server.url + "/sdapi/v1/txt2img", json=FULL_PAYLOAD, timeout=60)
    assert response.status_code == 200, response.text
    data = response.json()
    image = Image.open(io.BytesIO(base64.b64decode(data["images"][0])))
    assert image.size == (64, 64)
    info = json.loads(data["info"])
    assert (info["seed"], info["steps"], info["cfg_scale"]) == (3, MAX_STEPS, 6.5)
    assert info["ignored_override_settings"] == []


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"enable_hr": True}, "enable_hr", "hires fix"),
        ({"tiling": True}, "tiling", "tiling"),
        ({"script_name": "x/y/z plot"}, "script_name", "scripts"),
        ({"refiner_checkpoint": "sd_xl_refiner_1.0.safetensors"}, "refiner_checkpoint", "refiner"),
        (
            {"override_settings": {"sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors"}},
            "override_settings.sd_model_checkpoint",
            "the one model served is 'scott-tiny'",
        ),
        ({"width": 100}, "width", "multiple"),
        ({"steps": True}, "steps", "integer"),
        ({"seed": -2}, "seed", "-1"),
        ({"cfg_scale": 50}, "cfg_scale", "20"),
        ({"prompt": ""}, "prompt", "at least 1"),
    ],
)
def test_what_cannot_be_honoured_is_a_4xx_naming_the_field(live_server, change: dict, field: str, words: str) -> None:
    response = httpx.post(live_server.url + "/sdapi/v1/txt2img", json={**FULL_PAYLOAD, **change}, timeout=60)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and words in error["message"], error


def test_more_images_than_one_request_takes_run_as_a1111_numbers_them(api: webuiapi.WebUIApi, live_server) -> None:
    result = api.txt2img(prompt="many", seed=100, steps=1, width=32, height=32, batch_size=4, n_iter=3)
    assert len(result.images) == 12 and result.info["all_seeds"] == list(range(100, 112))
    body = {"prompt": "many", "seed": 109, "steps": 1, "guidance_scale": 7.0, "width": 32, "height": 32}
    alone = httpx.post(live_server.url + "/generate", json=body, headers={"Accept": "image/png"}, timeout=60)
    diff = np.abs(pixels(result.images[9]) - pixels(Image.open(io.BytesIO(alone.content))))
    assert diff.max() <= 2


def test_an_omitted_size_is_the_models_default(live_server) -> None:
    body = {"prompt": "a red circle", "steps": 1}
    data = httpx.post(live_server.url + "/sdapi/v1/txt2img", json=body, timeout=60).json()
    assert Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).size == (64, 64)


def test_send_images_false_answers_info_only(live_server) -> None:
    body = {**FULL_PAYLOAD, "send_images": False}
    data = httpx.post(live_server.url + "/sdapi/v1/txt2img", json=body, timeout=60).json()
    assert data["images"] == [] and json.loads(data["info"])["seed"] == 3


def test_txt2img_is_timed_on_metrics(live_server) -> None:
    httpx.post(live_server.url + "/sdapi/v1/txt2img", json=FULL_PAYLOAD, timeout=60)
    assert 'endpoint="/sdapi/v1/txt2img",status="200"' in httpx.get(live_server.url + "/metrics").text


@pytest.fixture(scope="module")
def keyed_server(tiny_pipeline) -> Iterator:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    with BackgroundServer(create_app(ServerSettings(api_keys=KEY, warmup=False), pipeline=tiny_pipeline)) as server:
        yield server


def test_with_keys_the_client_needs_its_bearer_header(keyed_server) -> None:
    api = webuiapi.WebUIApi(baseurl=keyed_server.url + "/sdapi/v1")
    with pytest.raises(RuntimeError) as caught:
        api.txt2img(prompt="x", width=32, height=32, steps=1)
    assert caught.value.args[0] == 401
    assert httpx.get(keyed_server.url + "/sdapi/v1/sd-models").status_code == 401
    api.session.headers["Authorization"] = f"Bearer {KEY}"
    assert len(api.txt2img(prompt="x", width=32, height=32, steps=1).images) == 1
    assert api.util_get_model_names() == ["scott-tiny"]


def test_a_model_switch_to_another_model_is_refused_naming_the_served_one(api: webuiapi.WebUIApi) -> None:
    with pytest.raises(RuntimeError) as caught:
        api.txt2img(prompt="x", width=32, height=32, override_settings={"sd_model_checkpoint": "other.safetensors"})
    status, text = caught.value.args
    error = json.loads(text)["error"]
    assert status == 422 and error["field"] == "override_settings.sd_model_checkpoint"
    assert "'other.safetensors'" in error["message"] and "'scott-tiny'" in error["message"]


def test_naming_the_served_model_is_fine_and_ignored_settings_are_named_in_info(api: webuiapi.WebUIApi) -> None:
    served = api.get_sd_models()[0]
    overrides = {
        "sd_model_checkpoint": served["title"],
        "samples_format": "png",  # what GET /options reports: honoured as it is
        "CLIP_stop_at_last_layers": 2,
        "sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors",
    }
    result = api.txt2img(prompt="x", steps=1, width=32, height=32, override_settings=overrides)
    assert len(result.images) == 1
    assert result.info["ignored_override_settings"] == ["CLIP_stop_at_last_layers", "sd_vae"]
    by_name = api.txt2img(
        prompt="x", steps=1, width=32, height=32, override_settings={"sd_model_checkpoint": served["model_name"]}
    )
    assert by_name.info["ignored_override_settings"] == []


def test_returned_seeds_past_the_last_are_accepted_back_and_remake_their_image(api: webuiapi.WebUIApi) -> None:
    result = api.txt2img(prompt="wrap", seed=MAX_SEED, steps=1, width=32, height=32, batch_size=2, n_iter=2)
    assert result.info["all_seeds"] == [MAX_SEED, 0, 1, 2]
    alone = api.txt2img(prompt="wrap", seed=result.info["all_seeds"][2], steps=1, width=32, height=32)
    assert alone.info["all_seeds"] == [1]
    assert np.abs(pixels(result.images[2]) - pixels(alone.image)).max() <= 2
