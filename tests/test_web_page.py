"""The daemon's web page (``/``) in a real browser: Debian's headless Chromium driven by selenium through the
system chromedriver (nothing downloaded), against the real ``edgedet camera`` subprocess with a token,
snapshots on, and generated videos in which a bright disc passes (so object events with snapshots come).

Skipped, with the reason, when chromium, chromedriver or selenium are missing (``.ci/run`` installs the
first two with apt, like mosquitto; selenium is in the dev extra). ``EDGEDET_WEB_SCREENSHOT=path.png``
also saves a screenshot of the page (the one in ``docs/``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_daemon import TOKEN, DaemonProcess, blob_frames, build_tiny_onnx, tiny_config, write_video

from edgedet.edge.camera.config import DaemonConfig

pytestmark = pytest.mark.slow  # a daemon and a browser start: about 15 s

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
PAGE = Path(__file__).resolve().parents[1] / "edge" / "camera" / "web" / "index.html"
WAIT_S = 30.0

# A hash of the pixels of a camera's live image (drawn on a canvas: blob: URLs are same-origin), with its URL.
IMAGE_HASH_JS = """
const img = document.querySelector(`article[data-camera="${arguments[0]}"] img`);
if (!img || !img.src.startsWith("blob:") || !img.complete || !img.naturalWidth) return null;
const canvas = Object.assign(document.createElement("canvas"), {width: img.naturalWidth, height: img.naturalHeight});
const ctx = canvas.getContext("2d");
ctx.drawImage(img, 0, 0);
const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let hash = 0;
for (let i = 0; i < data.length; i += 4) {
  hash = (Math.imul(hash, 31) + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) >>> 0;
}
return [img.src, img.naturalWidth, img.naturalHeight, hash];
"""

# Fetch a path in the page (with the page's token, or none): status, content type, first bytes.
FETCH_JS = """
const [path, withToken, done] = arguments;
const token = sessionStorage.getItem("edgedet-token");
const headers = withToken && token ? {Authorization: "Bearer " + token} : {};
fetch(path, {headers}).then(async (r) => {
  const bytes = new Uint8Array(await r.arrayBuffer());
  done([r.status, r.headers.get("Content-Type"), Array.from(bytes.slice(0, 3)), bytes.length]);
}, (e) => done([0, String(e), [], 0]));
"""


def browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver from the system, or skip saying what is missing."""
    chromium = next((path for name in CHROMIUM if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None
    )
    if chromium is None or driver is None:
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver; .ci/run does)")
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = browser_paths()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) drives the browser")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium  # with the driver's path too, selenium-manager never runs (nor downloads)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


def multi_camera() -> bool:
    """Does the daemon take a ``cameras:`` list (several cameras in one process)?"""
    return "cameras" in DaemonConfig.model_fields


def clips() -> bool:
    """Does the daemon record event clips (``clips:``)?"""
    return "clips" in DaemonConfig.model_fields


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("web")
    model = build_tiny_onnx(workdir / "tiny.onnx")
    frames = blob_frames()
    videos = [write_video(workdir / "a.avi", frames), write_video(workdir / "b.avi", frames[::-1])]
    zones = [{"name": "left", "polygon": [[0, 0], [160, 0], [160, 240], [0, 240]]}]  # drawn on the images
    config = tiny_config(model, videos[0], workdir, snapshots={"dir": str(workdir / "snapshots")}, zones=zones)
    config["events"]["include_empty"] = False
    names = ["test-cam"]
    if multi_camera():
        names = ["front", "back"]
        del config["name"], config["source"]
        config["cameras"] = [{"name": n, "source": str(v)} for n, v in zip(names, videos, strict=True)]
    if clips():
        config["clips"] = {"enabled": True, "dir": str(workdir / "clips"), "pre_s": 0.5, "post_s": 0.2}
    proc = DaemonProcess(workdir, config)
    proc.names = names
    yield proc
    proc.stop()


def wait(driver, predicate, what: str, timeout: float = WAIT_S):
    """``predicate(driver)`` once truthy; elements the page replaced meanwhile just mean: try again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiter = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiter.until(lambda d: predicate(d), message=what)


def visible(driver, css: str) -> bool:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return bool(found) and found[0].is_displayed()


def changed(driver, name: str, first: list):
    """The camera's image state when both its URL and its pixels differ from ``first`` (else None)."""
    now = driver.execute_script(IMAGE_HASH_JS, name)
    return now if now and now[0] != first[0] and now[3] != first[3] else None


def log_in(driver, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    driver.execute_script("performance.setResourceTimingBufferSize(100000)")  # the tests read the requests
    wait(driver, lambda d: visible(d, "#login"), "the log-in form")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


# -------------------------------------------------------------------------------------------- tests


def test_the_page_is_served_at_root_without_a_token_and_needs_nothing_from_outside(daemon):
    status, headers, body = daemon.get("/", token=None)
    assert status == 200 and headers["Content-Type"].startswith("text/html"), body[:200]
    assert body == PAGE.read_bytes()
    text = body.decode()
    for outside in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import", "//cdn"):
        assert outside not in text, outside  # no external script, style, font or image: works on a LAN


def test_a_wrong_token_is_rejected_and_shows_no_image(browser, daemon):
    from selenium.webdriver.common.by import By

    log_in(browser, daemon.url, "wrong-token-0000")
    wait(browser, lambda d: "not accepted" in d.find_element(By.ID, "login-error").text, "the error message")
    assert visible(browser, "#login") and not visible(browser, "#dashboard")
    assert browser.find_elements(By.CSS_SELECTOR, "#cameras img") == []
    assert browser.execute_script("return sessionStorage.getItem('edgedet-token')") is None


def test_the_right_token_shows_live_images_that_change_and_events_with_working_snapshots(browser, daemon):
    from selenium.webdriver.common.by import By

    log_in(browser, daemon.url, TOKEN)
    wait(browser, lambda d: visible(d, "#dashboard"), "the dashboard")
    browser.get_log("browser")  # from here on, no error in the console
    assert browser.find_element(By.ID, "login-error").text == ""
    assert browser.execute_script("return sessionStorage.getItem('edgedet-token')") == TOKEN

    for name in daemon.names:  # every camera's image is live: a new blob: URL, other pixels
        first = wait(browser, lambda d, n=name: d.execute_script(IMAGE_HASH_JS, n), f"{name}'s first image")
        assert first[1:3] == [320, 240]
        later = wait(browser, lambda d, n=name, f=first: changed(d, n, f), f"{name}'s image to change")
        assert later[1:3] == [320, 240]
        card = browser.find_element(By.CSS_SELECTOR, f'article[data-camera="{name}"]')
        status = card.find_element(By.CSS_SELECTOR, "dd")  # the first field: the camera's status
        wait(browser, lambda d, s=status: s.text == "ok", f"{name}'s status")
        assert card.find_element(By.TAG_NAME, "img").get_attribute("alt") == f"Live view of camera {name}"

    # an object passed: its row has a snapshot link that works (with the token, and only with it)
    thumbnail = "const i = document.querySelector('#events a.snapshot img'); return i && i.naturalWidth > 0"
    wait(browser, lambda d: d.execute_script(thumbnail), "an object with its snapshot")
    link = browser.find_element(By.CSS_SELECTOR, "#events tbody tr a.snapshot")
    path = link.get_attribute("href").removeprefix(daemon.url)
    assert path.startswith("/events/") and path.endswith("/snapshot.jpg")
    status, ctype, magic, size = browser.execute_async_script(FETCH_JS, path, True)
    assert (status, ctype, magic) == (200, "image/jpeg", [0xFF, 0xD8, 0xFF]) and size > 1000
    assert browser.execute_async_script(FETCH_JS, path, False)[0] == 401
    row = link.find_element(By.XPATH, "ancestor::tr")
    assert row.find_elements(By.TAG_NAME, "td")[2].text in daemon.names
    assert row.find_elements(By.TAG_NAME, "td")[3].text.startswith("thing #")

    link.click()  # the viewer shows the full snapshot
    shown = "const i = document.querySelector('#viewer[open] img'); return i && i.complete && i.naturalWidth"
    assert wait(browser, lambda d: d.execute_script(shown), "the snapshot in the viewer") == 320
    browser.find_element(By.ID, "viewer-close").click()

    # the token only ever travelled in a header: no URL the page asked for holds it
    urls = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert any("/cameras" in u for u in urls) and not any(TOKEN in u for u in urls)

    if os.environ.get("EDGEDET_WEB_SCREENSHOT"):
        browser.set_window_size(1000, 1250)
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events tbody tr img[src^=blob]")) >= 2, "rows")
        browser.save_screenshot(os.environ["EDGEDET_WEB_SCREENSHOT"])

    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in errors if "status of 401" not in e] == []  # (401: the fetch without the token above)

    browser.find_element(By.ID, "logout").click()  # log out: the token and the images are gone
    wait(browser, lambda d: visible(d, "#login"), "the log-in form again")
    assert browser.find_elements(By.CSS_SELECTOR, "#cameras img") == []
    assert browser.execute_script("return sessionStorage.getItem('edgedet-token')") is None


def test_camera_status_matches_the_daemon(browser, daemon):
    from selenium.webdriver.common.by import By

    log_in(browser, daemon.url, TOKEN)
    wait(browser, lambda d: visible(d, "#dashboard"), "the dashboard")
    status, _, body = daemon.get("/cameras")
    cameras = json.loads(body)["cameras"]
    assert status == 200 and [c["name"] for c in cameras] == daemon.names
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cameras article")) == len(cameras), "the cards")
    shown = [a.get_attribute("data-camera") for a in browser.find_elements(By.CSS_SELECTOR, "#cameras article")]
    assert shown == daemon.names
    options = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#event-camera option")]
    assert options == ["", *daemon.names]


def test_a_hidden_tab_fetches_no_images_until_it_is_shown_again(browser, daemon):
    log_in(browser, daemon.url, TOKEN)
    wait(browser, lambda d: d.execute_script(IMAGE_HASH_JS, daemon.names[0]), "the first image")
    live = "return performance.getEntriesByType('resource').filter((e) => e.name.includes('/cameras/')).length"
    set_hidden = (
        "Object.defineProperty(document, 'hidden', {value: arguments[0], configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )

    def elapse(ms: float) -> None:
        start = browser.execute_script("return performance.now()")
        wait(browser, lambda d: d.execute_script("return performance.now()") - start > ms, f"{ms} ms")

    browser.execute_script(set_hidden, True)
    elapse(500)  # the fetches under way finish
    browser.execute_script("performance.clearResourceTimings()")
    elapse(1500)
    assert browser.execute_script(live) == 0
    browser.execute_script(set_hidden, False)
    wait(browser, lambda d: d.execute_script(live) >= 2 * len(daemon.names), "images again once shown")


def test_an_objects_clip_opens_in_the_viewer_with_a_download_link(browser, daemon):
    from selenium.webdriver.common.by import By

    if not clips():
        pytest.skip("the daemon does not record clips (no `clips` config key)")
    log_in(browser, daemon.url, TOKEN)
    wait(browser, lambda d: visible(d, "#dashboard"), "the dashboard")

    def open_finished_clip(driver):  # a clip button whose clip is written (served once finished): click it
        for button in driver.find_elements(By.CSS_SELECTOR, "#events button[data-clip]"):
            path = button.get_attribute("data-clip")
            if driver.execute_async_script(FETCH_JS, path, True)[0] == 200:
                button.click()  # the viewer plays it, or says this browser cannot (MPEG-4 Part 2)
                return path
        return None

    path = wait(browser, open_finished_clip, "an object with a finished clip")
    assert path.startswith("/events/") and "/clip." in path
    status, _, _, size = browser.execute_async_script(FETCH_JS, path, True)
    assert status == 200 and size > 1000
    assert browser.execute_async_script(FETCH_JS, path, False)[0] == 401
    download = browser.find_element(By.ID, "viewer-download")
    wait(browser, lambda d: (download.get_attribute("href") or "").startswith("blob:"), "the clip's download link")
    assert download.get_attribute("download").endswith(path.rsplit("/", 1)[1])
    assert browser.execute_async_script(FETCH_JS, download.get_attribute("href"), False)[3] == size
    assert browser.find_elements(By.CSS_SELECTOR, "#viewer-body video, #viewer-body [role=alert]")
    browser.find_element(By.ID, "viewer-close").click()
