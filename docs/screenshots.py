"""Take the README's screenshots: TensorBoard on the demo's runs, and the demo's HTML report.

    make demo                      # writes runs/demo and report/
    python docs/screenshots.py     # writes docs/images/tensorboard-*.png and docs/images/report.png

Drives a real TensorBoard and a real Chromium (the Debian package ``chromium``,
or the executable in ``$WEIGHTWATCH_CHROMIUM``) through Playwright.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the browser helpers the tests use

from browser import PageLog, browser, chromium_path, open_page, tensorboard  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"))
    parser.add_argument("--report", type=Path, default=Path("report"))
    parser.add_argument("--out", type=Path, default=HERE / "images")
    args = parser.parse_args(argv)
    executable = chromium_path()
    if executable is None:
        print("no Chromium: apt-get install chromium (or set WEIGHTWATCH_CHROMIUM)", file=sys.stderr)
        return 2
    for needed in (args.runs, args.report / "index.html"):
        if not needed.exists():
            print(f"{needed} does not exist: run `make demo` first", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tensorboard(args.runs) as base, browser(executable) as b:
        page = open_page(b, f"{base}/#scalars", PageLog(), width=1300, height=820)
        page.locator("tf-tag-filterer input").first.fill("^weights/.*/(mean|std)$")
        page.get_by_text("tag: weights/all/std").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2500)
        page.screenshot(path=str(args.out / "tensorboard-scalars.png"))
        page = open_page(b, f"{base}/#histograms", PageLog(), width=1300, height=820)
        page.locator("tf-tag-filterer input").first.fill("^weights/")
        page.wait_for_timeout(5000)
        page.screenshot(path=str(args.out / "tensorboard-histograms.png"))
        page = open_page(b, (args.report / "index.html").resolve().as_uri(), PageLog(), width=1300, height=1100)
        page.wait_for_load_state("load")
        page.screenshot(path=str(args.out / "report.png"))
    for name in ("tensorboard-scalars.png", "tensorboard-histograms.png", "report.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
