"""List-decoder throughput on the default model: against the FLOP bound and a naive loop.

Prints, in one run on the bundled SmolLM2-135M-Instruct (float32, CPU):

1. the matrix-multiply bound (``torch.matmul`` of 2048 x 2048 float32 matrices, best of 5,
   the larger of just before and just after each row; same threads as the model);
2. for top-k rules that give lists of known width (``k`` children per candidate, depth
   ``T``: widths ``1, k, ..., k^(T-1)`` expanded, so the forward batches are ``k^t`` cut
   into ``--batch-size`` chunks), candidates expanded per second by
   :func:`llm_bridge.listdecode.list_decode` (one batched forward per chunk and depth, with
   the key/value cache gathered by parent), and the achieved GFLOP/s as a fraction of the
   bound, in wall-clock and in process CPU time.  FLOPs are counted per forward call as in
   ``bench_sampling.py``: ``2 * P_body * tokens + 2 * V * d * logit_positions``, attention
   left out (so the fraction is understated);
3. the same candidates expanded by a naive loop -- one full forward over prompt plus prefix
   per candidate, no cache, no batching -- timed on a sample of the tree's nodes, and the
   speed-up of the batched decoder.

Rows ``k:T`` grow the whole tree (widths ``1, k, k^2, ...``: the early depths are small
forward batches, whatever the implementation).  Rows ``k:T:cap`` keep at most ``cap``
candidates per depth and run them in one forward of ``cap`` rows: the steady state of a
capped scan, where every depth after the first few is a full batch.

4. the scan regime: :func:`llm_bridge.r0_scan.r0_scan` along ``K`` temperatures (threshold
   rule 0.05, the bridge's default, depth ``T``, cap ``cap``), whose points are decoded
   together (one prompt forward, merged batches of up to 256 rows, the scan's default),
   against the same points decoded one at a time by
   :func:`~llm_bridge.listdecode.list_decode`.  Short decodes are where one list
   alone is smallest: a single prompt forward and lists of a few candidates.

Run: ``python benchmarks/bench_listdecode.py`` (about three minutes on two idle CPU cores).
"""

from __future__ import annotations

import argparse
import inspect
import os
import time

import numpy as np
import torch
from bench_sampling import Clock, FlopCounter, matmul_bound

from llm_bridge.eligibility import Threshold, TopK
from llm_bridge.listdecode import list_decode
from llm_bridge.models import load_model
from llm_bridge.r0_scan import r0_scan

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def decoder_row(lm, prompt, counter, k, depth, cap, batch_size, repeats):
    """Best of ``repeats`` list decodes with ``TopK(k)`` to ``depth`` (``cap``: None or int)."""
    best = None
    for _ in range(repeats):
        counter.reset()
        clock = Clock()
        result = list_decode(lm, [prompt], rule=TopK(k), n_steps=depth, cap=cap,
                             batch_size=batch_size, n_boot=20, rng=0)
        wall, cpu = clock.elapsed()
        expanded = int(result.records.expanded().sum())
        widest = int(result.list_size[0, :depth].max())
        row = {"k": k, "depth": depth, "widest": widest, "expanded": expanded,
               "wall": wall, "per_s": expanded / wall, "gflops_wall": counter.flops / wall / 1e9,
               "gflops_cpu": counter.flops / cpu / 1e9, "result": result}
        if best is None or row["per_s"] > best["per_s"]:
            best = row
    return best


def scan_row(lm, prompt, counter, n_points, depth, cap, together):
    """A temperature scan of ``n_points`` points, decoded together or one at a time (each
    with its function's default batch size)."""
    grid = np.geomspace(0.5, 2.0, n_points)
    kwargs = dict(rule=Threshold(0.05), n_steps=depth, cap=cap, n_boot=20)
    counter.reset()
    clock = Clock()
    if together:
        results = r0_scan(lm, [prompt], grid=grid, rng=0, progress=False, **kwargs).points
    else:
        results = [list_decode(lm, [prompt], temperature=t, rng=0, **kwargs) for t in grid]
    wall, cpu = clock.elapsed()
    expanded = sum(int(r.records.expanded().sum()) for r in results)
    return {"expanded": expanded, "wall": wall, "per_s": expanded / wall,
            "gflops_wall": counter.flops / wall / 1e9, "gflops_cpu": counter.flops / cpu / 1e9,
            "widest": max(int(r.list_size.max()) for r in results)}


def naive_per_candidate(lm, prompt, result, n_sample, rule):
    """Seconds per candidate of a full uncached forward per candidate (on a node sample)."""
    nodes = result.records.nodes
    prefix = {}
    for i in range(len(nodes["depth"])):
        parent = nodes["parent"][i]
        prefix[i] = () if parent < 0 else prefix[parent] + (int(nodes["token"][i]),)
    expanded = np.flatnonzero(nodes["children"] >= 0)
    sample = np.random.default_rng(0).choice(expanded, size=min(n_sample, expanded.size),
                                             replace=False)
    clock = Clock()
    with torch.no_grad():
        for i in sample:
            ids = torch.tensor([list(prompt) + list(prefix[i])])
            logits = lm.model(ids, use_cache=False).logits[0, -1]
            rule.eligible(torch.log_softmax(logits, dim=-1)[None])
    wall, _ = clock.elapsed()
    return wall / len(sample)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="4:4,8:3,16:3,4:8:64,4:8:128",
                        help="comma-separated K:T or K:T:CAP (top-k width, depth, list cap; "
                             "a capped row runs forward batches of CAP rows)")
    parser.add_argument("--scans", default="8:4:64,8:6:32",
                        help="comma-separated K:T:CAP temperature scans (points, depth, cap)")
    parser.add_argument("--batch-size", type=int, default=64, help="candidates per forward")
    parser.add_argument("--repeats", type=int, default=1, help="repeats per row (best kept)")
    parser.add_argument("--naive-sample", type=int, default=24,
                        help="candidates timed with the naive loop")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    start = time.perf_counter()
    lm = load_model(device="cpu")
    print(f"model: {lm} (loaded in {time.perf_counter() - start:.1f} s, {threads} threads)")
    prompt = lm.encode(PROMPT, chat=True)
    counter = FlopCounter(lm.model)
    print(f"prompt: {len(prompt)} tokens; {2 * (counter.body + counter.head) / 1e6:.0f} MFLOP "
          f"per token-evaluation with logits; uncapped rows run forward batches of at most "
          f"{args.batch_size}")
    print(f"{'k':>3} {'T':>2} {'cap':>4} {'widest':>6} {'expanded':>8} {'s':>6} {'cand/s':>7} "
          f"{'GFLOP/s':>7} {'bound':>6} {'of bound':>8} {'CPU: of bound':>13} "
          f"{'naive cand/s':>12} {'speed-up':>8}")
    for pair in args.rows.split(","):
        k, depth, *rest = (int(v) for v in pair.split(":"))
        cap = rest[0] if rest else None
        before = matmul_bound()
        row = decoder_row(lm, prompt, counter, k, depth, cap, cap or args.batch_size, args.repeats)
        after = matmul_bound()
        bound_wall, bound_cpu = max(before[0], after[0]), max(before[1], after[1])
        naive = naive_per_candidate(lm, prompt, row["result"], args.naive_sample, TopK(k))
        print(f"{k:>3} {depth:>2} {cap or '-':>4} {row['widest']:>6} {row['expanded']:>8} {row['wall']:>6.1f} "
              f"{row['per_s']:>7.1f} {row['gflops_wall']:>7.1f} {bound_wall:>6.1f} "
              f"{row['gflops_wall'] / bound_wall:>8.1%} {row['gflops_cpu'] / bound_cpu:>13.1%} "
              f"{1 / naive:>12.1f} {row['per_s'] * naive:>8.1f}x")
    joint = inspect.signature(r0_scan).parameters["batch_size"].default
    alone = inspect.signature(list_decode).parameters["batch_size"].default
    print(f"temperature scans (threshold 0.05; forward batches of at most {joint} rows decoded "
          f"together, {alone} one at a time):")
    print(f"{'K':>3} {'T':>2} {'cap':>4} {'decoded':>13} {'widest':>6} {'expanded':>8} {'s':>6} "
          f"{'cand/s':>7} {'GFLOP/s':>7} {'of bound':>8} {'CPU: of bound':>13} {'speed-up':>8}")
    for triple in args.scans.split(","):
        n_points, depth, cap = (int(v) for v in triple.split(":"))
        before = matmul_bound()
        rows = [scan_row(lm, prompt, counter, n_points, depth, cap, together)
                for together in (False, True)]
        after = matmul_bound()
        bound_wall, bound_cpu = max(before[0], after[0]), max(before[1], after[1])
        for name, row in zip(("one at a time", "together"), rows):
            print(f"{n_points:>3} {depth:>2} {cap:>4} {name:>13} {row['widest']:>6} "
                  f"{row['expanded']:>8} {row['wall']:>6.1f} {row['per_s']:>7.1f} "
                  f"{row['gflops_wall']:>7.1f} {row['gflops_wall'] / bound_wall:>8.1%} "
                  f"{row['gflops_cpu'] / bound_cpu:>13.1%} "
                  f"{rows[0]['wall'] / row['wall']:>7.2f}x")
    counter.close()
    print("targets: >= 40% of the matmul bound at the scan's batch sizes, >= 10x the naive loop; on a shared "
          "machine the wall-clock columns mostly measure the competition for the cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
