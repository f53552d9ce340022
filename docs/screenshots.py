"""Screenshots of the built site in headless Chromium: the home page, one API page and one guide.

    python docs/screenshots.py SITE_DIR OUT_DIR [--chromium=PATH]

SITE_DIR is what ``mkdocs build`` wrote; it is served over HTTP on localhost (as a reader's browser gets it)
and each page is shot at 1280x1600 into OUT_DIR (keep it outside the repository), e.g.
``OUT_DIR/home.png``. Exit code 1 when Chromium fails or a picture is blank; 3 when no Chromium is found.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Iterator

#: picture name -> page path in the site
PAGES = {"home": "", "api": "reference/api/", "guide": "guides/first-run/", "config": "reference/config/",
         "models": "reference/models/", "losses": "reference/losses/", "cli": "reference/cli/"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_BROWSER = 3


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium to use: ``explicit``, else the first of :data:`BROWSERS` on PATH."""
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        del format, args


@contextlib.contextmanager
def serve(site: pathlib.Path) -> Iterator[str]:
    """``site`` over HTTP on a free localhost port, for the duration; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def shoot(chromium: str, url: str, out: pathlib.Path, profile: str) -> None:
    command = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,1600",
               "--virtual-time-budget=5000", f"--screenshot={out}", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode or not out.exists():
        raise RuntimeError(f"chromium failed on {url}: {result.stderr.strip()[-500:]}")


def is_blank(path: pathlib.Path) -> bool:
    """True when the picture has (almost) a single colour: nothing was drawn."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    return colours is not None and len(colours) < 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("site", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--chromium", default=None)
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print(f"screenshots: no Chromium found ({', '.join(BROWSERS)}); skipped")
        return NO_BROWSER
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    with serve(args.site) as base, tempfile.TemporaryDirectory() as profile:
        for name, page in PAGES.items():
            path = args.out / f"{name}.png"
            shoot(chromium, base + page, path, profile)
            blank = is_blank(path)
            failures += blank
            print(f"screenshots: {path}{' BLANK' if blank else ''}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
