"""Sampling and scoring throughput on the default model, and the cost of a temperature scan.

Prints, in one run on the bundled SmolLM2-135M-Instruct (float32, CPU unless CUDA exists):

1. the matrix-multiply bound: GFLOP/s of ``torch.matmul`` on 2048 x 2048 float32 matrices
   with the thread count the model uses (best of 5), measured just before and just after
   every throughput row, the larger of the two being used;
2. for a few sampling batch sizes, generated + scored tokens per second (``sample`` with
   the KV cache in one batch, then ``score`` of the same tokens in batches of 64, best of
   ``--repeats``) and the achieved GFLOP/s as a fraction of the bound.  FLOPs are counted
   per forward call from the tokens actually run:
   ``2 * P_body * tokens + 2 * V * d * logit_positions``, with ``P_body`` the parameters
   outside the input embedding and ``V * d`` the output projection; attention FLOPs
   (``4 * layers * context * d`` per token, about 2% here) are left out, so the fraction
   is slightly understated.  Decoding one token per sequence multiplies skinny matrices
   (``S x d`` by ``d x d'``), which run well below the square-matrix rate, so a large
   sampling batch pays; scoring multiplies ``64 N x d`` matrices and needs no more.  The same ratio is also given in CPU time (FLOPs per
   CPU-second of this process against the matmul's), which is insensitive to other
   processes competing for the cores -- on a shared machine the wall-clock ratio mostly
   measures the competition;
3. model token-evaluations of a temperature scan (K grid points, S samples, N tokens,
   window L, prompt of P tokens): this package (K*S*N generation + K*S*N teacher-forced
   scoring for all 4L-1 neighbouring temperatures at once), counted on a real run of one
   grid point, against the original scheme (for each of the 4L-1 temperatures and each
   output position a full uncached forward over prompt + prefix:
   K*S*(4L-1)*sum_{i<N}(P+i)).

Run: ``python benchmarks/bench_sampling.py`` (two to three minutes on two idle CPU cores).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from llm_bridge.models import load_model
from llm_bridge.sampling import sample, score

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


class Clock:
    """Wall-clock and process CPU time elapsed since construction."""

    def __init__(self):
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def elapsed(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def matmul_bound(size: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """Best GFLOP/s per wall-second and per CPU-second of a float32 matrix product."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    torch.matmul(a, b)
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        clock = Clock()
        torch.matmul(a, b)
        w, c = clock.elapsed()
        wall, cpu = min(wall, w), min(cpu, c)
    flops = 2 * size**3
    return flops / wall / 1e9, flops / cpu / 1e9


class FlopCounter:
    """Counts token-evaluations and FLOPs of every forward call of a causal LM."""

    def __init__(self, model):
        embedding = model.get_input_embeddings().weight
        head = model.get_output_embeddings().weight
        self.body = sum(p.numel() for p in model.parameters()) - embedding.numel()
        if head.data_ptr() != embedding.data_ptr():
            self.body -= head.numel()
        self.head = head.numel()
        self.tokens = 0
        self.flops = 0
        self._handle = model.register_forward_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        logit_positions = output.logits.shape[0] * output.logits.shape[1]
        self.tokens += ids.numel()
        self.flops += 2 * self.body * ids.numel() + 2 * self.head * logit_positions

    def reset(self):
        self.tokens = 0
        self.flops = 0

    def close(self):
        self._handle.remove()


def throughput(lm, prompt, counter, batch_size, score_batch_size, n_tokens, repeats):
    """Sample ``batch_size`` continuations in one batch and score them in batches of
    ``score_batch_size``; the best of ``repeats``."""
    best = None
    for repeat in range(repeats):
        counter.reset()
        clock = Clock()
        out = sample(lm, prompt, batch_size, n_tokens, temperature=1.0, eos="none",
                     batch_size=batch_size, rng=repeat)
        generate_wall, _ = clock.elapsed()
        logp = score(lm, prompt, out.tokens, out.lengths, temperatures=[1.0], eos="none",
                     batch_size=score_batch_size)
        wall, cpu = clock.elapsed()
        row = {
            "batch": batch_size,
            "generate_s": generate_wall,
            "score_s": wall - generate_wall,
            "tokens_per_s": 2 * out.lengths.sum() / wall,
            "gflops_wall": counter.flops / wall / 1e9,
            "gflops_cpu": counter.flops / cpu / 1e9,
            "logp_gap": float(np.abs(logp[:, 0] - out.logp).max()),
        }
        if best is None or row["tokens_per_s"] > best["tokens_per_s"]:
            best = row
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16, help="tokens per continuation N")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512],
                        help="sampling batch sizes to try (S = batch size)")
    parser.add_argument("--score-batch-size", type=int, default=64,
                        help="scoring batch size (each sample costs N logit vectors)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats per batch size")
    parser.add_argument("--grid", type=int, default=20, help="temperature grid points K")
    parser.add_argument("--samples", type=int, default=1000, help="samples per grid point S")
    parser.add_argument("--window", type=int, default=2, help="window L")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the model and the matmul (default: torch's)")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    lm = load_model()
    print(f"model: {lm}  (loaded in {time.perf_counter() - start:.1f} s, {threads} threads)")
    prompt = lm.encode(PROMPT, chat=True)
    print(f"prompt: {len(prompt)} tokens (chat template)")

    counter = FlopCounter(lm.model)
    per_token = 2 * (counter.body + counter.head)
    print(f"\n(1)+(2) throughput, N = {args.tokens}, T = 1, eos='none', S = sampling batch size, "
          f"scoring batch {args.score_batch_size}, best of {args.repeats}; "
          f"{per_token / 1e6:.0f} MFLOP per token-evaluation with "
          f"logits; matmul bound = 2048^2 float32 product, {threads} threads, best of 5, "
          f"larger of before/after the row")
    print(f"{'batch':>5} {'gen s':>6} {'score s':>7} {'tok/s':>6} {'GFLOP/s':>7} "
          f"{'bound':>6} {'of bound':>8} {'| CPU-time: of bound':>20} {'max|dlogp|':>10}")
    rows = []
    for batch_size in args.batch_sizes:
        before = matmul_bound()
        row = throughput(lm, prompt, counter, batch_size, args.score_batch_size, args.tokens,
                         args.repeats)
        after = matmul_bound()
        row["bound_wall"] = max(before[0], after[0])
        row["bound_cpu"] = max(before[1], after[1])
        row["fraction_wall"] = row["gflops_wall"] / row["bound_wall"]
        row["fraction_cpu"] = row["gflops_cpu"] / row["bound_cpu"]
        rows.append(row)
        print(f"{row['batch']:>5} {row['generate_s']:>6.1f} {row['score_s']:>7.1f} "
              f"{row['tokens_per_s']:>6.1f} {row['gflops_wall']:>7.1f} "
              f"{row['bound_wall']:>6.1f} {row['fraction_wall']:>8.1%} "
              f"{row['fraction_cpu']:>20.1%} {row['logp_gap']:>10.1e}")
    best = max(rows, key=lambda r: r["fraction_wall"])
    print(f"best: sampling batch {best['batch']}, scoring batch {args.score_batch_size}: "
          f"{best['tokens_per_s']:.1f} generated+scored tokens/s, "
          f"{best['fraction_wall']:.1%} of the matmul bound in wall-clock time, "
          f"{best['fraction_cpu']:.1%} in CPU time (target >= 50%)")

    k, s, n, window, p = args.grid, args.samples, args.tokens, args.window, len(prompt)
    neighbours = 4 * window - 1
    temperatures = np.geomspace(0.5, 1.5, neighbours)
    probe = min(s, 16)
    counter.reset()
    out = sample(lm, prompt, probe, n, temperature=1.0, eos="none", batch_size=probe, rng=0)
    generated = counter.tokens
    counter.reset()
    score(lm, prompt, out.tokens, temperatures=temperatures, eos="none", batch_size=probe)
    scored = counter.tokens
    counter.close()
    # one sample() and one score() call per grid point: the prompt is run once per call
    ours_counted = k * (p + (generated - p) / probe * s + p + (scored - p) / probe * s)
    ours_formula = 2 * k * s * n
    original = k * s * neighbours * sum(p + i for i in range(n))
    print(f"\n(3) temperature scan K={k}, S={s}, N={n}, L={window} ({neighbours} temperatures "
          f"per sample), P={p}: model token-evaluations")
    print(f"  this package, 2*K*S*N:                       {ours_formula:>13,d}")
    print(f"  this package, counted on one grid point x K: {ours_counted:>13,.0f}")
    print(f"  original scheme, K*S*(4L-1)*sum_(i<N)(P+i):  {original:>13,d}")
    print(f"  ratio original / this package (counted):     {original / ours_counted:>13.1f}x "
          f"(target >= 10x)")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}; "
          f"total time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
