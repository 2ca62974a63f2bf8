"""The live view in a real browser: headless Debian Chromium driven by Selenium through Debian's
chromedriver, on a page fed by two real pipelines (a SynthAVS scene through the shipped weights,
and a model-free stream), checked from the page itself.

Needs the Debian packages chromium and chromium-driver (.ci/run installs them before
``make test-live``) and the selenium package (the dev extra); skipped, with the reason, without.
"""

from __future__ import annotations

import base64
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.live

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
pytest.importorskip("aiohttp", reason="the live view needs aiohttp")

from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from stream import PipelineConfig, run_pipeline  # noqa: E402
from stream.stages.models import export_cached  # noqa: E402
from stream.view.server import ViewServer  # noqa: E402

from .conftest import ROOT  # noqa: E402

W, H, FPS, SEED, SECONDS = 320, 240, 30, 0, 10.0
WAIT_S = 120  # generous: the machine may be loaded; every wait ends as soon as its condition holds


def _scene_frame(index: int) -> tuple[np.ndarray, np.ndarray]:
    """SynthAVS frame ``index`` of the stream the pipeline ran: (image RGB, ground-truth mask)."""
    from synthavs import SceneConfig, SceneGenerator

    gen = SceneGenerator(SceneConfig(width=W, height=H, fps=FPS, seed=SEED))
    episode, local = divmod(index, FPS * gen.config.episode_seconds)
    image, mask, _ = gen.render(gen.plan(episode, gen.config.episode_seconds), local / FPS)
    return image, mask


def _canvas(driver, sid: str) -> tuple[np.ndarray, int] | None:
    """The frame the page shows for ``sid`` (RGB, read back from its canvas) and its pts (None: none drawn yet)."""
    url, pts = driver.execute_script(
        "const c = document.querySelector(`.card[data-stream='${arguments[0]}'] canvas.video`);"
        "return [c.toDataURL('image/png'), c.dataset.pts];", sid)
    if pts is None:
        return None
    png = base64.b64decode(url.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), int(pts)


def _tint_where_it_sounds(driver) -> tuple[float, float] | None:
    """(share of the ground-truth sounding pixels the page shows tinted, share of the others), or
    None when the shown frame has (almost) nothing sounding."""
    got = _canvas(driver, "icf-lite")
    if got is None:
        return None
    shown, pts = got
    image, gt = _scene_frame(round(pts * FPS / 1e9))
    if shown.shape != image.shape or gt.mean() < 0.01:
        return None
    tinted = np.abs(shown.astype(int) - image.astype(int)).sum(axis=2) > 90  # 0.55 magenta over the frame; JPEG moves < 30
    sounding = gt > 0
    return tinted[sounding].mean(), tinted[~sounding].mean()


@pytest.fixture(scope="module")
def driver():
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,820"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


def test_live_view_in_a_real_browser(driver, tmp_path):
    weights = ROOT / "weights" / "icf-lite-synthavs.safetensors"
    if not weights.is_file():
        pytest.skip("the shipped weights are not in this checkout")
    onnx = str(export_cached(weights=str(weights), cache_dir=None))
    wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.2)
    js = driver.execute_script
    with ViewServer(port=18500) as view:
        driver.get(view.url)  # before the streams start: the page waits for them
        wait.until(lambda d: js("return window.icfView.connected"))
        runs = {
            "icf-lite": PipelineConfig(source={"kind": "synthetic", "width": W, "height": H, "fps": FPS, "seed": SEED, "seconds": SECONDS},
                                    backend={"kind": "engine", "artifact": onnx, "backend": "onnxruntime"}, stream_id="icf-lite",
                                    sink={"view": view.feed_address}),
            "no-model": PipelineConfig(source={"kind": "synthetic", "width": W, "height": H, "fps": FPS, "seed": 1, "seconds": SECONDS},
                                   backend={"kind": "null"}, stream_id="no-model", sink={"view": view.feed_address}),
        }
        reports: dict[str, dict] = {}
        threads = [threading.Thread(target=lambda k=k, c=c: reports.update({k: run_pipeline(c)})) for k, c in runs.items()]
        for t in threads:
            t.start()
        try:
            # two streams in the grid
            wait.until(lambda d: js("return document.querySelectorAll('.card').length") == 2)
            assert sorted(js("return [...document.querySelectorAll('.card')].map(c => c.dataset.stream)")) == ["icf-lite", "no-model"]
            # the mask tint where the ground truth says something sounds (the shipped weights segment SynthAVS)
            checks = []

            def tinted(_):
                got = _tint_where_it_sounds(driver)
                if got is not None:
                    checks.append(got)
                return any(inside > 0.5 and inside > 3 * outside for inside, outside in checks)
            wait.until(tinted, message=f"no tinted sounding object on the page: (inside, outside) = {checks}")
            driver.save_screenshot(str(tmp_path / "live-view.png"))
            for t in threads:
                t.join()
        finally:
            for t in threads:
                t.join()
        for k, rep in reports.items():
            assert rep["ok"], (k, rep["errors"])

        # frames advanced: >= 10 distinct frames within 2 s, on the page's own clock, where the model is not the limit
        # (the model-free stream: the view's own delivery); the model's stream runs at its speed (5-15 fps on 2 cores)
        arrivals = js("return window.icfView.arrivals")
        for sid, want in (("no-model", 10), ("icf-lite", 3)):
            a = arrivals[sid]
            best = max(len({seq for t, seq in a if t0 <= t < t0 + 2000}) for t0, _ in a)
            print(f"{sid}: {len(a)} frames drawn, at most {best} distinct in 2 s")
            assert best >= want, (sid, best, len(a))
        # the hears text and the latency changed while it ran; the stream's end is shown
        wait.until(lambda d: js("return window.icfView.stats['icf-lite'].state") == "ended")
        seen = js("return window.icfView.seen['icf-lite']")
        print(f"tint (inside, outside) per check: {checks}; seen: {seen}")
        assert len(set(seen["hears"]) - {"-"}) >= 2 and len(set(seen["latency"]) - {"-"}) >= 2, seen
        shown = driver.find_element("css selector", ".card[data-stream='icf-lite'] .verdict").text
        assert shown == (view.streams["icf-lite"].info.get("hears") or view.streams["icf-lite"].info["concepts"][0][0])
        assert "ended" in driver.find_element("css selector", ".card[data-stream='icf-lite'] .state").text
        events = driver.find_element("css selector", ".card[data-stream='icf-lite'] .events").text
        assert "started sounding" in events and "stopped sounding" in events, events  # the sound stopped at the end

        # a reload after the end: both streams again, their last frame, the final state
        driver.refresh()
        wait.until(lambda d: js("return Object.keys(window.icfView.frames).length") == 2)
        wait.until(lambda d: js("return window.icfView.stats['no-model'] && window.icfView.stats['no-model'].state") == "ended")
        assert js("return window.icfView.last['icf-lite'].seq") == view.streams["icf-lite"].info["seq"]
        assert driver.find_element("css selector", ".card[data-stream='no-model'] .delivered").text == str(reports["no-model"]["frames"]["processed"])
    shot = tmp_path / "live-view.png"
    assert shot.stat().st_size > 10_000
    if (dest := Path(__import__("os").environ.get("ICF_VIEW_SCREENSHOT", ""))).suffix == ".png":
        shutil.copy(shot, dest)  # docs/live-view.png is made this way
