"""The playground at GET /: served self-contained, and driven in a real headless Chromium against the live server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from scott.data.attributes import parse_caption

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "scott-tiny"
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromedriver (apt-get install -y chromium chromium-driver)",
)
# Without the background-networking flags Chromium stalls on refused connections in a sandboxed CI.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
)
CONTROLS = ("prompt", "steps", "seed", "guidance_scale", "gamma", "num_images", "width", "height")


def test_the_page_is_self_contained_html(live_server) -> None:
    page = httpx.get(live_server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # no CDN, nothing fetched from elsewhere
    for control in CONTROLS:
        assert f'<label for="{control}"' in page.text, control


def test_info_gives_the_sizes_defaults_and_limits(live_server) -> None:
    info = httpx.get(live_server.url + "/info").json()
    assert info["model"] == "scott-tiny"
    assert (info["backend"], info["precision"]) == ("torch", "f32")  # what the live server runs
    # A folder without serving.json: every size the model can make (multiples of 16, half to twice 64), no examples.
    assert info["sizes"] == [32, 48, 64, 80, 96, 112, 128]
    assert info["examples"] == []
    assert (info["default_size"], info["default_steps"], info["max_steps"], info["max_images"]) == (64, 4, 4, 8)
    assert info["default_guidance_scale"] == 8.0 and info["default_gamma"] == 0.3


def test_info_gives_the_shipped_models_examples_and_its_one_size(shipped_server) -> None:
    info = httpx.get(shipped_server.url + "/info").json()
    card = json.loads((SHIPPED / "serving.json").read_text())
    assert info["sizes"] == card["sizes"] == [64]  # trained on 64x64 only: at 128 objects come out doubled
    assert info["examples"] == card["examples"] and 6 <= len(info["examples"]) <= 8
    for prompt in info["examples"]:  # in the data's vocabulary: one object, every attribute named
        attributes = parse_caption(prompt)
        assert attributes.complete, prompt


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def open_playground(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url + "/")
    # The button is enabled once /info has answered and filled in the model's defaults.
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "generate").is_enabled())


def fill(driver: webdriver.Chrome, control: str, value: str) -> None:
    element = driver.find_element(By.ID, control)
    element.clear()
    element.send_keys(value)


@pytest.mark.browser
@needs_chromium
def test_generate_shows_the_images_with_their_seeds_and_timings(browser: webdriver.Chrome, live_server) -> None:
    open_playground(browser, live_server.url)
    unlabeled = browser.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')].filter(e => !e.labels.length).map(e => e.id)"
    )
    assert unlabeled == []
    assert browser.find_element(By.ID, "steps").get_attribute("value") == "4"  # the model's default, from /info
    fill(browser, "prompt", "a red circle")
    fill(browser, "steps", "1")
    fill(browser, "seed", "7")
    fill(browser, "num_images", "2")
    Select(browser.find_element(By.ID, "width")).select_by_value("96")
    Select(browser.find_element(By.ID, "height")).select_by_value("48")
    browser.find_element(By.ID, "generate").click()

    def loaded_images(driver: webdriver.Chrome) -> list[list[int]] | None:
        sizes = driver.execute_script(
            "return [...document.querySelectorAll('#images img')]"
            ".filter(img => img.complete).map(img => [img.naturalWidth, img.naturalHeight])"
        )
        return sizes if len(sizes) == 2 else None

    assert WebDriverWait(browser, 60).until(loaded_images) == [[96, 48], [96, 48]]
    captions = [caption.text for caption in browser.find_elements(By.CSS_SELECTOR, "#images figcaption")]
    assert captions == ["seed 7", "seed 8"]
    assert browser.find_element(By.CSS_SELECTOR, "#images img").get_attribute("alt") == "a red circle (seed 7)"
    summary = browser.find_element(By.ID, "summary").text
    assert "2 images, 96×48, 1 step" in summary and re.search(r"UNet \d+ ms", summary), summary
    assert not browser.find_element(By.ID, "error").is_displayed()


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize(
    ("control", "value", "body"),
    [
        ("steps", "9", {"prompt": "a red circle", "steps": 9}),
        ("prompt", "", {"prompt": ""}),
    ],
)
def test_the_server_error_is_shown_and_its_field_marked(
    browser: webdriver.Chrome, live_server, control: str, value: str, body: dict[str, object]
) -> None:
    open_playground(browser, live_server.url)
    fill(browser, "prompt", "a red circle")
    fill(browser, control, value)
    browser.find_element(By.ID, "generate").click()
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 30).until(lambda _: error.is_displayed())
    expected = httpx.post(live_server.url + "/generate", json={**body, "num_images": 1}).json()["error"]
    assert expected["field"] == control
    assert error.text == expected["message"]
    assert browser.find_element(By.ID, control).get_attribute("aria-invalid") == "true"
    assert browser.find_elements(By.CSS_SELECTOR, "#images img") == []
    # Correcting the field and generating again clears the error.
    fill(browser, control, "1" if control == "steps" else "a blue square")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#images img"))
    assert not error.is_displayed()
    assert browser.find_element(By.ID, control).get_attribute("aria-invalid") is None


@pytest.mark.browser
@needs_chromium
def test_on_a_server_with_keys_the_page_asks_for_one_and_sends_it(browser: webdriver.Chrome, tiny_pipeline) -> None:
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.support.background_server import BackgroundServer

    key = "playground-key-0123456789"
    with BackgroundServer(create_app(ServerSettings(api_keys=key, warmup=False), pipeline=tiny_pipeline)) as server:
        browser.get(server.url + "/")
        key_box = browser.find_element(By.ID, "api_key")
        WebDriverWait(browser, 30).until(lambda _: key_box.is_displayed())
        assert "API key" in browser.find_element(By.ID, "status").text
        assert not browser.find_element(By.ID, "generate").is_enabled()
        key_box.send_keys(key + "\n")  # "change" fires: /info again, with the key
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "generate").is_enabled())
        fill(browser, "prompt", "a red circle")
        fill(browser, "steps", "1")
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#images img"))
        assert not browser.find_element(By.ID, "error").is_displayed()


@pytest.mark.browser
@needs_chromium
def test_the_models_examples_are_offered_and_fill_in_the_prompt(browser: webdriver.Chrome, shipped_server) -> None:
    examples = httpx.get(shipped_server.url + "/info").json()["examples"]
    open_playground(browser, shipped_server.url)
    prompt = browser.find_element(By.ID, "prompt")
    assert prompt.get_attribute("placeholder") == examples[0]
    chips = browser.find_elements(By.CSS_SELECTOR, "#examples button")
    assert [chip.text for chip in chips] == examples
    # One size served: the page sends none (the server's default) and shows no size menus.
    assert not browser.find_element(By.ID, "width").is_displayed()
    chips[2].click()
    assert prompt.get_attribute("value") == examples[2]
    fill(browser, "steps", "1")
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#images img"))
    assert browser.find_element(By.CSS_SELECTOR, "#images img").get_attribute("alt").startswith(examples[2])
    assert "64×64" in browser.find_element(By.ID, "summary").text


@pytest.mark.browser
@needs_chromium
def test_a_model_without_examples_shows_none(browser: webdriver.Chrome, live_server) -> None:
    open_playground(browser, live_server.url)
    assert not browser.find_element(By.ID, "examples").is_displayed()
    assert browser.find_element(By.ID, "prompt").get_attribute("placeholder") == "describe the image"
