"""schemathesis against the live server: every operation of /openapi.json, every check, bounded examples, zero
failures. So the spec says exactly what the server accepts and answers (sizes as the model's list, strict integers,
every status a route returns, /metrics as text)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

# A 504 is the documented answer to a request's own deadline (timeout_ms: 1 cannot be met): not a server fault.
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "504"]
"""


def test_schemathesis_finds_nothing(live_server, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    st = Path(sys.executable).with_name("st")
    command = [str(st), "--config-file", str(config), "run", f"{live_server.url}/openapi.json"]
    command += ["--checks", "all", "--max-examples", "8", "--seed", "21", "--request-timeout", "120", "--no-color"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its cache: there
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "failures" not in done.stdout.splitlines()[-1] or " 0 failures" in done.stdout


def test_the_spec_lists_the_models_sizes_once_it_is_loaded(live_server) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    models = spec["components"]["schemas"]
    sides = [32, 48, 64, 80, 96, 112, 128]  # the tiny model's: multiples of 16 from 32 to 128
    for model in ("GenerateRequest", "A1111Txt2ImgRequest"):
        for name in ("width", "height"):
            assert {"type": "integer", "enum": sides} in models[model]["properties"][name]["anyOf"]
    size = next(branch for branch in models["OpenAIImageRequest"]["properties"]["size"]["anyOf"] if "enum" in branch)
    assert {"auto", "64", "32x128"} <= set(size["enum"]) and "1024x1024" not in size["enum"]
    assert {"const": "b64_json"} in models["OpenAIImageRequest"]["properties"]["response_format"]["anyOf"]
    generate = spec["paths"]["/generate"]["post"]["responses"]
    assert {"401", "413", "415", "422", "429", "503", "504"} <= set(generate)


def test_an_integral_float_is_the_integer_json_schema_says_it_is(live_server) -> None:
    body = {"prompt": "a red circle", "steps": 2.0, "seed": 7.0, "width": 32.0, "height": 32}
    response = httpx.post(f"{live_server.url}/generate", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert (response.json()["steps"], response.json()["images"][0]["seed"]) == (2, 7)
