"""Drive JupyterLab in headless Chromium (Debian's chromium + chromium-driver) with selenium, as a user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
STDERR_OUTPUT = '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]'
# user settings for the test's JupyterLab: never autosave (the committed notebook must stay output-free), no news
SETTINGS = {"@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                                "checkForUpdates": False}}


def missing_browser() -> str | None:
    """Why the browser test cannot run here (None when chromium, its driver and selenium are all present)."""
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            return f"{exe} not found: apt-get install chromium chromium-driver (.ci/run does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -r requirements-dev.txt"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_lab(root: Path, home: Path, env: dict[str, str]) -> Iterator[str]:
    """JupyterLab serving `root` on a free local port, with its own settings and runtime folders; yields its URL."""
    settings = home / "lab-settings"
    for name, values in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port = free_port()
    env = {**os.environ, **env, "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    log = open(home / "jupyterlab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
                             "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
                             # JupyterLab checkpoints a notebook when it opens it: keep that out of the checkout
                             f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}"],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(home / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def chrome(width: int = 1280, height: int = 1000):
    """Headless Chromium driven by the system chromedriver (nothing downloaded)."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def wait_for(condition, timeout: float, what: str, poll: float = 0.5):
    """Poll `condition()` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def find(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def menu(driver, top: str, command: str) -> None:
    """Click a menu of the menu bar, then one of its items (by its JupyterLab command id)."""

    try:
        wait_for(lambda: not find(driver, ".jp-Dialog"), 30, "a dialog to close")
    except AssertionError:
        raise AssertionError("a JupyterLab dialog is open: " + " | ".join(e.text for e in find(driver, ".jp-Dialog")))
    bar = wait_for(lambda: [e for e in find(driver, ".lm-MenuBar-item") if e.text.strip() == top], 60, f"menu {top}")
    bar[0].click()
    item = wait_for(lambda: find(driver, f'.lm-Menu-item[data-command="{command}"]'), 20, f"menu item {command}")
    item[0].click()


def kernel_idle(driver) -> bool:
    """The notebook's kernel is idle and no cell is waiting or running."""
    status = find(driver, ".jp-Notebook-ExecutionIndicator")
    busy = [p for p in find(driver, ".jp-InputPrompt") if "[*]" in p.text]
    return bool(status) and status[0].get_attribute("data-status") == "idle" and not busy


def open_notebook(driver, url: str, path: str, kernel: str = "Python 3 (ipykernel)") -> None:
    """Open a notebook by its path under the server root and wait until its kernel is ready.

    Under load JupyterLab may open the notebook before it has listed the kernels and then asks
    which kernel to start ("Select Kernel"): the project's kernel is chosen, as a user would.
    """
    from selenium.webdriver.support.select import Select

    driver.get(f"{url}/lab/tree/{path}")
    wait_for(lambda: find(driver, ".jp-Notebook .jp-Cell"), 120, f"{path} to open")

    def ready() -> bool:
        for dialog in find(driver, ".jp-Dialog"):
            if "Select Kernel" not in dialog.text:
                raise AssertionError(f"unexpected JupyterLab dialog: {dialog.text}")
            choice = dialog.find_elements("css selector", "select")
            if choice:
                Select(choice[0]).select_by_visible_text(kernel)
            dialog.find_elements("css selector", ".jp-mod-accept")[0].click()
            return False
        return kernel_idle(driver) and kernel in " ".join(e.text for e in find(driver, ".jp-StatusBar-Widget"))

    wait_for(ready, 180, "the kernel to start")


def run_all(driver, timeout: float) -> None:
    """Run → Run All Cells, then wait until every code cell has run and the kernel is idle.

    A freshly opened notebook can report an idle kernel before its connection accepts requests,
    and then drops the run; the menu is used again (at most twice more) if no cell starts.
    """
    def prompts() -> list[str]:
        return [p.text.strip() for p in find(driver, ".jp-CodeCell .jp-InputPrompt")]

    for attempt in range(3):
        menu(driver, "Run", "runmenu:run-all")
        try:
            wait_for(lambda: any(p not in ("[ ]:", "") for p in prompts()), 30, "a cell to start")
            break
        except AssertionError:
            if attempt == 2:
                raise

    def done() -> bool:
        shown = prompts()
        return bool(shown) and all(p.startswith("[") and p[1:-2].strip().isdigit() for p in shown) \
            and kernel_idle(driver)

    wait_for(done, timeout, "Run All Cells to finish", poll=1.0)


def error_outputs(driver) -> list[str]:
    """Texts of stderr/traceback outputs anywhere in the notebook."""
    return [e.text[:500] for e in find(driver, STDERR_OUTPUT)] + \
        [e.text[:500] for e in find(driver, ".jp-OutputArea-output") if "Traceback" in e.text]


def screenshot(element_or_driver, path: Path) -> Path:
    """A PNG of the window, or of a whole element (the window is made tall enough for it, then restored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(element_or_driver, "save_screenshot"):
        element_or_driver.save_screenshot(str(path))
        return path
    driver = element_or_driver.parent
    size = driver.get_window_size()
    height = int(element_or_driver.size["height"]) + 400
    if height > size["height"]:
        driver.set_window_size(size["width"], min(height, 4000))
        time.sleep(1)
    driver.execute_script("arguments[0].scrollIntoView()", element_or_driver)
    element_or_driver.screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    return path
