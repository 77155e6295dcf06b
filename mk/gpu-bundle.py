#!/usr/bin/env python3
"""Pack the CUDA build's `grokstack` and `cuda` test executables for the device machine.

usage: gpu-bundle.py CARGO_MESSAGES.jsonl BUNDLE_DIR

Reads cargo's JSON messages (--message-format=json...) for the two executables, strips each
(symbols are most of their size) and writes BUNDLE_DIR/grokstack.xz and BUNDLE_DIR/cuda-test.xz.
Refuses an executable that does not link libcuda.so.1 (a CPU build).
"""
import json
import lzma
import pathlib
import shutil
import subprocess
import sys


def executables(messages: pathlib.Path) -> dict:
    found = {}
    for line in messages.read_text().splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            target = message["target"]
            if target["name"] == "grokstack" and "bin" in target["kind"]:
                found["grokstack"] = message["executable"]
            elif target["name"] == "cuda" and "test" in target["kind"]:
                found["cuda-test"] = message["executable"]
    return found


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    messages, bundle = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    found = executables(messages)
    for name in ("grokstack", "cuda-test"):
        if name not in found:
            raise SystemExit(f"{messages}: cargo built no {name} executable")
        source = pathlib.Path(found[name])
        needed = subprocess.run(["readelf", "-d", str(source)], check=True, capture_output=True, text=True).stdout
        if "libcuda.so.1" not in needed:
            raise SystemExit(f"{source} does not link libcuda.so.1: not a CUDA build")
        stripped = bundle / name
        shutil.copyfile(source, stripped)
        subprocess.run(["strip", str(stripped)], check=True)
        with open(stripped, "rb") as raw, lzma.open(bundle / f"{name}.xz", "wb", preset=6) as packed:
            shutil.copyfileobj(raw, packed)
        stripped.unlink()
        print(f"{name}: {source} -> {bundle / (name + '.xz')}")


if __name__ == "__main__":
    main()
