"""The explorer in a real browser: Voilà serves a notebook on 127.0.0.1, headless Chromium drives it.

The test waits for the explorer, moves the packet slider one step with the
keyboard and checks that the hex view now shows the next packet. The final
screenshot is kept in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

PROJECT_ROOT = Path(__file__).absolute().parents[1]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CAPTURE = "pktmask_tls_1_2_plainip.pcap"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1200",
]
SERVER_START_SECONDS = 90
PAGE_SECONDS = 120
CHANGE_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"voila exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"voila did not answer on {url} within {SERVER_START_SECONDS} s:\n{log.read_text()}")


def hex_lines(pane_text: str) -> list[str]:
    """The hex dump lines of a pane's text, offset and bytes only."""
    return [line[:55] for line in pane_text.splitlines() if line[:4].isalnum() and line[4:6] == "  "]


def dumped_bytes(pane_text: str) -> bytes:
    return bytes.fromhex("".join(line[6:55] for line in hex_lines(pane_text)))


def stop(server: subprocess.Popen) -> None:
    """Stop the Voilà server started by this test, and its kernels (its own process group)."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


@pytest.fixture
def notebook(corpus_dir, tmp_path) -> Path:
    path = tmp_path / "explorer.ipynb"
    cells = [
        "from pktmask_nb import Pipeline\n"
        "from pktmask_nb.stages.anonymize import AnonymizeIPs\n"
        "from pktmask_nb.stages.mask import MaskPayloads\n"
        "pipeline = Pipeline([AnonymizeIPs(key=bytes(range(32))), MaskPayloads()], progress=False)\n"
        f"result = pipeline.run({str(corpus_dir / CAPTURE)!r}, {str(tmp_path / 'out.pcap')!r})",
        "result.explore(frames=(14, 15))",
    ]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_explorer_slider_changes_hex(notebook, tmp_path):
    for tool in ("voila", CHROMIUM, CHROMEDRIVER):
        assert shutil.which(tool), (
            f"{tool} is missing: pip install voila selenium; apt-get install -y chromium chromium-driver"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "voila.log"
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    command = ["voila", notebook.name, f"--port={port}", "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"]
    command += ["--no-browser", "--show_tracebacks=True"]
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    driver = None
    try:
        wait_for_server(url, server, log)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(PAGE_SECONDS)
        driver.get(url)

        def before_text(d) -> str:
            panes = d.find_elements(By.CSS_SELECTOR, ".pktmask-before")
            return panes[0].text if panes else ""

        WebDriverWait(driver, PAGE_SECONDS).until(lambda d: "before: input frame 14" in before_text(d))
        first = before_text(driver)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "explorer-frame-14.png"))
        handle = driver.find_element(By.CSS_SELECTOR, ".pktmask-packet .noUi-handle")
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT)
        WebDriverWait(driver, CHANGE_SECONDS).until(lambda d: before_text(d) != first)

        second = before_text(driver)
        driver.save_screenshot(str(ARTIFACTS / "explorer-frame-15.png"))
        assert "before: input frame 15" in second
        # Frame 14 carries two application_data records, frame 15 one: the dumps differ in bytes too.
        assert hex_lines(first) != hex_lines(second)
        assert hex_lines(second)
        assert first.count("application_data (23)") == 2
        assert second.count("application_data (23)") == 1
        after = driver.find_element(By.CSS_SELECTOR, ".pktmask-after").text
        assert "after: output frame 15" in after
        # Only the record header stays; the input's record body was not all zeros.
        assert dumped_bytes(after)[:5] == bytes.fromhex("170303006a")
        assert set(dumped_bytes(after)[5:]) == {0}
        assert set(dumped_bytes(second)[5:]) != {0}
        assert len(dumped_bytes(second)) == 111
    finally:
        if driver is not None:
            driver.quit()
        stop(server)
