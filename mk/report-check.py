#!/usr/bin/env python3
"""The browser test of report.html (`make report-test`; Python's standard library only).

Trains the tiny sweep tests/fixtures/report-sweep.toml, analyzes it (with the study), and renders
DIR/analysis/report.html in headless Chromium with no network:

- screenshots at a phone's and a wide screen's window size are decoded and must not be blank,
  and must show the headline's border colour (the inline stylesheet applied);
- the DOM Chromium built (--dump-dom) must hold every line of the headline, one captioned
  table per CSV file with the CSV's header, one per Markdown table of each .md file, one inline
  SVG per plot, the sweep's name as text (it holds markup), and nothing fetched from elsewhere;
- every file the page or the analysis text names (links, `*.png`/`*.svg`) must exist.

Exits non-zero with the reason on the first failure.
"""

import argparse
import csv
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path

SWEEP = Path("tests/fixtures/report-sweep.toml")
# The headline's left border in report.html's stylesheet: seen only if the CSS applied.
HEADLINE_BORDER = (0x1F, 0x77, 0xB4)
WINDOWS = {"phone": (412, 915), "wide": (1440, 900)}
# Chromium's own start can take seconds on a busy 2-core machine; a hang is a failure.
CHROMIUM_TIMEOUT_S = 120


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def run(command, timeout=300):
    """`command`'s stdout; its stderr in the error when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def train_and_analyze(binary, out):
    """The headline lines `grokstack analyze` printed."""
    shutil.rmtree(out, ignore_errors=True)
    run([binary, "train", SWEEP, "--out", out])
    # --study: the optimizer study's tables and box plots are part of the page too.
    printed = run([binary, "analyze", out, "--study"]).splitlines()
    # After the headline: an optional line on unfinished runs and "wrote DIR".
    return [l for l in printed if l.strip() and not l.startswith("wrote ") and "not finished yet" not in l]


def chromium(binary, profile, page, *flags):
    """Chromium's stdout for `page` in headless mode. As root it needs --no-sandbox; the
    resolver rule makes any network access fail, so a page that needed one would show it."""
    return run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions",
         f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
         *flags, page.as_uri()],
        timeout=CHROMIUM_TIMEOUT_S,
    )


def decode_png(data):
    """(width, height, channels, rows) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    check(header is not None, "the screenshot has no IHDR")
    width, height, depth, colour, _, _, interlace = header
    check(depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG format {header}")
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        unfilter(kind, line, previous, channels)
        rows.append(line)
        previous = line
    return width, height, channels, rows


def unfilter(kind, line, previous, bpp):
    """Undoes the PNG filter `kind` of one scanline in place (PNG spec, section 9)."""
    if kind == 0:
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            corner = previous[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        else:
            raise CheckFailed(f"unknown PNG filter {kind}")


def check_screenshot(path, size):
    width, height, channels, rows = decode_png(path.read_bytes())
    check((width, height) == size, f"{path.name} is {width}×{height}, not {size}")
    counts = {}
    for line in rows:
        for x in range(0, len(line), channels):
            pixel = bytes(line[x:x + 3])
            counts[pixel] = counts.get(pixel, 0) + 1
    background = max(counts.values())
    drawn = 1 - background / (width * height)
    check(len(counts) >= 16 and drawn >= 0.02, f"{path.name} is blank: {len(counts)} colours, {drawn:.1%} drawn")
    check(bytes(HEADLINE_BORDER) in counts, f"{path.name} does not show the styled headline")
    return drawn


class Dom(HTMLParser):
    """What the test reads from the DOM: its text, the tables (file, caption, header cells),
    the figures and their SVGs, and every link and source."""

    def __init__(self):
        super().__init__()
        self.text, self.tables, self.figures, self.urls, self.tags = [], [], {}, [], set()
        self.figure, self.in_caption, self.in_th, self.skip = None, False, False, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs.items() if k in ("href", "src") and v]
        if tag in ("style", "script"):
            self.skip += 1
        elif tag == "table":
            self.tables.append({"file": attrs.get("data-file"), "caption": "", "header": []})
        elif tag == "caption":
            self.in_caption = True
        elif tag == "th":
            self.in_th = True
            self.tables[-1]["header"].append("")
        elif tag == "figure":
            self.figure = attrs.get("id")
            self.figures[self.figure] = 0
        elif tag == "svg" and self.figure is not None:
            self.figures[self.figure] += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self.skip -= 1
        elif tag == "caption":
            self.in_caption = False
        elif tag == "th":
            self.in_th = False
        elif tag == "figure":
            self.figure = None

    def handle_data(self, data):
        if self.skip:
            return
        self.text.append(data)
        if self.in_caption:
            self.tables[-1]["caption"] += data
        if self.in_th:
            self.tables[-1]["header"][-1] += data


def normalized(text):
    return " ".join(text.split())


def check_dom(dom, analysis, headline, sweep_name_line):
    text = normalized(" ".join(dom.text))
    for line in headline:
        check(normalized(line) in text, f"the page lacks the headline line {line!r}")

    check(all(t["caption"].strip() for t in dom.tables), "a table has no caption")
    csvs = sorted(p for p in analysis.glob("*.csv"))
    for path in csvs:
        shown = [t for t in dom.tables if t["file"] == path.name]
        check(len(shown) == 1, f"{path.name}: {len(shown)} tables on the page, not 1")
        with path.open(newline="") as f:
            header = next(csv.reader(f))
        check(shown[0]["header"] == header, f"{path.name}: header {shown[0]['header']} on the page, {header} in the file")
        check(path.name in shown[0]["caption"], f"{path.name}'s caption does not name it")
    documents = sorted(analysis.glob("*.md"))
    for path in documents:
        expected = sum(1 for l in path.read_text().splitlines() if l.startswith("| ---"))
        shown = [t for t in dom.tables if t["file"] == path.name]
        check(len(shown) == expected, f"{path.name}: {len(shown)} tables on the page, {expected} in the file")

    svgs = sorted(analysis.glob("*.svg"))
    check(svgs, "the analysis drew no plot")
    for path in svgs:
        check(dom.figures.get(path.stem) == 1, f"{path.name} is not one inline SVG in figure #{path.stem}")
    check(sum(dom.figures.values()) == len(svgs), "the page has SVGs that are no plot file")

    for url in dom.urls:
        check("://" not in url and not url.startswith("//"), f"the page fetches {url}")
        if not url.startswith("#"):
            check((analysis / url).is_file(), f"the page links {url}, which the analysis did not write")
    for name in set(re.findall(r"[\w-]+\.(?:png|svg)\b", text)):
        check((analysis / name).is_file(), f"the page names {name}, which the analysis did not write")

    check(sweep_name_line in text, f"the sweep's name does not show as text: {sweep_name_line!r}")
    check("test" not in dom.tags, "the sweep's name was parsed as markup")
    return len(dom.tables), len(svgs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, type=Path, help="the grokstack binary")
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--dir", required=True, type=Path, help="where the sweep is trained")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        check(shutil.which(args.chromium), f"{args.chromium} is not on PATH: run `make report-test`, which installs it")
        out = args.dir.resolve() / "sweep"
        headline = train_and_analyze(args.bin, out)
        analysis = out / "analysis"
        page = analysis / "report.html"
        check(page.is_file(), f"{page} was not written")
        sweep_name_line = next(l for l in SWEEP.read_text().splitlines() if l.startswith("name ="))
        with tempfile.TemporaryDirectory() as profile:
            for name, (w, h) in WINDOWS.items():
                png = args.dir.resolve() / f"report-{name}.png"
                png.unlink(missing_ok=True)
                chromium(args.chromium, profile, page, f"--screenshot={png}", f"--window-size={w},{h}")
                check(png.is_file(), f"chromium wrote no screenshot {png}")
                drawn = check_screenshot(png, (w, h))
                print(f"report-test: {name} screenshot {w}×{h}: {drawn:.0%} of pixels drawn ({png})")
            dom = Dom()
            dom.feed(chromium(args.chromium, profile, page, "--dump-dom"))
        tables, plots = check_dom(dom, analysis, headline, sweep_name_line)
    except (CheckFailed, subprocess.TimeoutExpired, OSError) as e:
        print(f"report-test FAILED: {e}", file=sys.stderr)
        return 1
    print(f"report-test: {page} renders: headline, {tables} tables, {plots} inline plots, the sweep "
          f"({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
