"""Capture throughput and peak memory of the default emergence experiment.

Prints, in one run (default: SmolLM2-135M-Instruct, 1024 category lists of 5 shots, every
block -- the default of ``llm-branching emergence``):

1. the matrix-multiply bound: GFLOP/s of ``torch.matmul`` on 1024 x 1024 float32 matrices
   with the thread count in use (best of 5), measured before and after the capture, the
   larger being used;
2. capture throughput: window tokens per second of the hooked forward passes (streams
   written to disk batch by batch), against the bound converted to tokens per second with
   ``2 * P_body`` FLOPs per token (``P_body``: parameters outside the input embedding and
   the output head, which the capture does not run; attention FLOPs are left out, so the
   fraction is slightly overstated).  Also in CPU time, which is insensitive to other
   processes competing for the cores;
3. the time of the metric (Gaussian estimator, 3 seeds) and of the whole experiment;
4. peak resident memory of the process (``resource.getrusage``) against the 4 GiB budget,
   and the bytes written to disk.

Run from the repository root: ``PYTHONPATH=. python benchmarks/bench_emergence.py [--samples N] [--model tiny:V] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def matmul_gflops(size: int = 1024, repeats: int = 5) -> float:
    a = torch.ones(size, size)
    b = torch.ones(size, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: bundled SmolLM2-135M")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--metric-layers", default=None,
                        help="comma list of blocks for the metric (default: all); the time of "
                             "all blocks is then extrapolated linearly and marked as such")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from llm_bridge.commands.scan import load_cli_model
    from llm_bridge.emergence.capture import capture
    from llm_bridge.emergence.experiment import build_dataset
    from llm_bridge.emergence.metric import emergence

    began = time.perf_counter()
    lm = load_cli_model(args.model)
    load_seconds = time.perf_counter() - began
    data = build_dataset(lm, "icl", shots=args.shots, n=args.samples, rng=0)
    body = sum(p.numel() for name, p in lm.model.named_parameters()
               if "embed" not in name and "lm_head" not in name and "wte" not in name)
    bound_before = matmul_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        reps = capture(lm, data, Path(tmp), batch_size=64)
        capture_cpu, capture_wall = time.process_time() - cpu0, time.perf_counter() - wall0
        bound_after = matmul_gflops()
        written = sum(p.stat().st_size for p in Path(tmp).iterdir())
        cpu1, wall1 = time.process_time(), time.perf_counter()
        layers = (None if args.metric_layers is None
                  else [int(x) for x in args.metric_layers.split(",")])
        result = emergence(reps, dataset=data, layers=layers, n_seeds=3, rng=0, dim=args.dim)
        metric_cpu, metric_wall = time.process_time() - cpu1, time.perf_counter() - wall1
    total = time.perf_counter() - began
    bound = max(bound_before, bound_after)
    tokens = data.n * data.length + reps.micro_tokens.size
    flops = 2.0 * body * tokens
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30
    print(f"model {lm.name}: {body:,} body parameters; torch threads {args.threads}")
    print(f"matmul bound: {bound:.1f} GFLOP/s (before {bound_before:.1f}, after {bound_after:.1f})")
    print(f"capture: {tokens} tokens in {capture_wall:.1f} s wall ({tokens / capture_wall:.0f} "
          f"tokens/s), {capture_cpu:.1f} s CPU")
    bound_tokens = bound * 1e9 / (2.0 * body)
    print(f"  FLOP bound {bound_tokens:.0f} tokens/s; achieved {flops / capture_wall / 1e9:.1f} "
          f"GFLOP/s = {flops / capture_wall / 1e9 / bound:.0%} of the bound (wall), "
          f"{flops / capture_cpu / 1e9 / (bound / args.threads):.0%} per CPU-second")
    print(f"metric (gaussian, dim {args.dim}, 3 seeds, {len(result.layers)} blocks x "
          f"{result.length} positions): {metric_wall:.1f} s wall, {metric_cpu:.1f} s CPU")
    if len(result.layers) < reps.n_blocks:
        scaled = metric_wall * reps.n_blocks / len(result.layers)
        print(f"  extrapolated to all {reps.n_blocks} blocks: {scaled:.0f} s wall")
        total += scaled - metric_wall
    print(f"whole experiment incl. model load ({load_seconds:.1f} s): {total:.1f} s"
          + (" (metric extrapolated)" if len(result.layers) < reps.n_blocks else ""))
    print(f"peak resident memory {peak:.2f} GiB (budget 4 GiB); "
          f"written to disk {written / 2**30:.2f} GiB")
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
