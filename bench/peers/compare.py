#!/usr/bin/env python3
"""Side-by-side table of `grokstack bench` and the PyTorch peer, appended to BENCHMARKS.md.

Usage:
  python bench/peers/compare.py GROKSTACK.json TORCH.json BENCHMARKS.md \
      [--command "the command that made GROKSTACK.json"]... [--dry-run]

Rows are matched on R and dtype. The ratio is grokstack's run-epochs/s over torch's:
above 1, grokstack is faster. Needs only the standard library.
"""

import argparse
import datetime
import json
import os
import sys


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def human_bytes(n):
    for unit in ["B", "KiB", "MiB", "GiB"]:
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def table(grok, torch):
    dtype = torch.get("dtype", "f32")
    ours = {r["runs"]: r for r in grok["results"] if r.get("dtype", "f32") == dtype}
    lines = [
        "| R | dtype | grokstack run-epochs/s | torch run-epochs/s | ratio grokstack/torch "
        "| grokstack s/epoch | torch s/epoch | grokstack GFLOP/s | torch GFLOP/s "
        "| grokstack peak RSS | torch peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in torch["results"]:
        g = ours.get(t["runs"])
        if g is None:  # grokstack was not run at this R: say so rather than drop the row
            lines.append(f"| {t['runs']} | {dtype} | – | {t['run_epochs_per_second']:.2f} | – "
                         f"| – | {t['median_epoch_seconds']:.3f} | – | {t['effective_gflops']:.1f} "
                         f"| – | {human_bytes(t['peak_rss_bytes'])} |")
            continue
        ratio = g["run_epochs_per_second"] / t["run_epochs_per_second"]
        lines.append(
            f"| {t['runs']} | {dtype} | {g['run_epochs_per_second']:.2f} | {t['run_epochs_per_second']:.2f} "
            f"| **{ratio:.2f}×** | {g['median_epoch_seconds']:.3f} | {t['median_epoch_seconds']:.3f} "
            f"| {g['effective_gflops']:.1f} | {t['effective_gflops']:.1f} "
            f"| {human_bytes(g['peak_rss_bytes'])} | {human_bytes(t['peak_rss_bytes'])} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grokstack_json")
    ap.add_argument("torch_json")
    ap.add_argument("benchmarks_md", help="appended to (created if missing)")
    ap.add_argument("--command", action="append", default=[], help="a command to record (repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="print the section, append nothing")
    args = ap.parse_args()
    with open(args.grokstack_json) as f:
        grok = json.load(f)
    with open(args.torch_json) as f:
        torch = json.load(f)

    body = table(grok, torch)
    print(body)
    details = [
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores (os.cpu_count())",
        f"- PyTorch {torch.get('torch_version', '?')}, {torch.get('threads', '?')} threads, "
        f"backward = {torch.get('grad', '?')}, first layer = {torch.get('first_layer', '?')}",
    ]
    gemm = grok.get("gemm")
    if gemm is not None:
        details.append(f"- grokstack's square {gemm['dtype']} GEMM ({gemm['n']}³) on this machine: {gemm['gflops']:.1f} GFLOP/s")
    details.append("- Ratio > 1: grokstack trains more run-epochs per second than PyTorch. An epoch is one "
                   "full-batch train step (forward, backward, AdamW) plus the test-set evaluation; "
                   "GFLOP/s counts 2·Σ(fan_in·fan_out)·(3·N_train + N_test) per run-epoch.")
    commands = "\n".join(args.command) if args.command else "(not recorded)"
    section = (f"\n## grokstack vs PyTorch, canonical stacked epoch — {datetime.date.today().isoformat()}\n\n"
               + "\n".join(details)
               + f"\n\nCommands:\n\n```sh\n{commands}\n```\n\n{body}\n")
    if args.dry_run:
        print(section)
        return
    with open(args.benchmarks_md, "a") as f:
        f.write(section)
    print(f"\nappended to {args.benchmarks_md}", file=sys.stderr)


if __name__ == "__main__":
    main()
