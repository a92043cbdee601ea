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

4. one temperature scan (12 log-spaced temperatures from 0.3 to 3, 48 samples, 8 tokens,
   window L = 1, so three temperatures per sample) run twice in the same process, model
   load included in both times:

   * this package: load the default model (from the per-user cache of converted GGUF
     weights when present) and run :func:`llm_bridge.scans.temperature_scan`, which packs
     several temperatures into each forward pass and scores every temperature from one
     teacher-forced pass per sample;
   * the original authors' scheme, written here from its description: load the model from
     the GGUF file, draw the samples of each temperature with transformers' ``generate``
     (full softmax: ``top_k=0``, ``top_p=1``; ``eos_token_id=[]``, since ``None`` falls back
     to the model's own EOS, and generation would stop there and pad), then re-score each sample at every
     neighbouring temperature with one uncached forward pass per output position
     (the logits of the last position only), summing ``log softmax(z / T')`` at the
     sampled tokens.

   Both sample EOS as an ordinary token (``eos="none"``), so they draw from the same law;
   the baseline's own-temperature scores are checked against ``score`` to make sure the two
   compute the same quantity.  The ratio of the two wall-clock times is printed; on a
   shared machine the absolute times mostly measure the competition, the ratio much less.

Run: ``python benchmarks/bench_sampling.py`` (sections 1-3: two to three minutes on two idle
CPU cores; section 4: about ten more), ``--only-scan`` for section 4 alone.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from llm_bridge import gguf_cache, models, scans
from llm_bridge.models import load_model
from llm_bridge.sampling import sample, score

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
SCAN_PROMPT = "Write one sentence about the sea."


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


def original_scheme_scan(grid, n_samples, n_tokens, seed):
    """The authors' scheme (see the module docstring): ``(load seconds, logp, tokens, lm)``,
    ``logp[k, s, 1 + d]`` the log-probability of sample ``s`` of temperature ``k`` at
    temperature ``k + d``, ``d`` in -1, 0, 1."""
    from transformers import GenerationConfig

    clock = Clock()
    lm = load_model(cache_dir=False)
    loaded, _ = clock.elapsed()
    prompt = torch.tensor([lm.encode(SCAN_PROMPT)])
    width = prompt.shape[1]
    repeated = prompt.expand(n_samples, -1)
    K = len(grid)
    logp = np.full((K, n_samples, 3), np.nan)
    tokens = np.empty((K, n_samples, n_tokens), dtype=np.int64)
    rows = torch.arange(n_samples)
    torch.manual_seed(seed)  # generate draws from torch's global generator
    with torch.no_grad():
        for k, temperature in enumerate(grid):
            config = GenerationConfig(
                do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0,
                max_new_tokens=n_tokens, eos_token_id=[], pad_token_id=lm.eos_token_id,
            )
            out = lm.model.generate(repeated, attention_mask=torch.ones_like(repeated),
                                    generation_config=config)
            x = out[:, width:]
            tokens[k] = x.numpy()
            for d in (-1, 0, 1):
                if not 0 <= k + d < K:
                    continue
                total = torch.zeros(n_samples, dtype=torch.float64)
                for i in range(n_tokens):
                    ids = torch.cat([repeated, x[:, :i]], dim=1)
                    z = lm.model(ids, use_cache=False, logits_to_keep=1).logits[:, -1]
                    logq = torch.log_softmax(z.float() / float(grid[k + d]), dim=-1)
                    total += logq[rows, x[:, i]].double()
                logp[k, :, 1 + d] = total.numpy()
    return loaded, logp, tokens, lm


def compare_scan(n_grid=12, n_samples=48, n_tokens=8, seed=0) -> None:
    """Section 4: this package's temperature scan against the original scheme."""
    grid = scans.log_temperature_grid(0.3, 3.0, n_grid)
    entry_present = (gguf_cache.cache_root() / "gguf").is_dir() and any(
        (gguf_cache.cache_root() / "gguf").glob(
            gguf_cache.file_digest(os.path.join(*models.default_model_path()))[:32] + "-*"))
    print(f"\n(4) temperature scan: K={n_grid} log-spaced temperatures 0.3..3, S={n_samples}, "
          f"N={n_tokens}, L=1, eos='none', prompt {SCAN_PROMPT!r} (plain encoding), "
          f"load average {os.getloadavg()[0]:.2f}")
    clock = Clock()
    lm = load_model()
    ours_load, _ = clock.elapsed()
    result = scans.temperature_scan(lm, SCAN_PROMPT, grid, n_samples=n_samples,
                                    n_tokens=n_tokens, eos="none", rng=seed, progress=False)
    ours_wall, ours_cpu = clock.elapsed()
    del lm
    print(f"  this package:    load {ours_load:6.1f} s (converted-weights cache "
          f"{'warm' if entry_present else 'cold: converted in this run'}), "
          f"scan {ours_wall - ours_load:7.1f} s, total {ours_wall:7.1f} s wall, "
          f"{ours_cpu:7.1f} s CPU")
    clock = Clock()
    base_load, logp, tokens, base_lm = original_scheme_scan(grid, n_samples, n_tokens, seed)
    base_wall, base_cpu = clock.elapsed()
    print(f"  original scheme: load {base_load:6.1f} s (GGUF read and de-quantised), "
          f"scan {base_wall - base_load:7.1f} s, total {base_wall:7.1f} s wall, "
          f"{base_cpu:7.1f} s CPU")
    prompt = base_lm.encode(SCAN_PROMPT)
    gap = max(
        float(np.abs(score(base_lm, prompt, tokens[k], temperatures=[grid[k]], eos="none")[:, 0]
                     - logp[k, :, 1]).max())
        for k in range(n_grid)
    )
    print(f"  check: baseline own-temperature log-probabilities vs score(): max gap {gap:.1e}; "
          f"mean log P at T={grid[0]:.2g}: ours {result.logp[0, :, 1].mean():.3f}, "
          f"baseline {logp[0, :, 1].mean():.3f}")
    print(f"  ratio original / this package: {base_wall / ours_wall:.1f}x with model load "
          f"(target >= 5x), {(base_wall - base_load) / (ours_wall - ours_load):.1f}x scan "
          f"alone; CPU time {base_cpu / ours_cpu:.1f}x")


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
    parser.add_argument("--only-scan", action="store_true",
                        help="run section 4 (scan against the original scheme) only")
    parser.add_argument("--scan-grid", type=int, default=12,
                        help="section 4: temperatures K")
    parser.add_argument("--scan-samples", type=int, default=48,
                        help="section 4: samples per temperature S")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the model and the matmul (default: torch's)")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs), "
          f"{threads} torch threads")
    if args.only_scan:
        compare_scan(args.scan_grid, args.scan_samples)
        print(f"\nload average at end: {os.getloadavg()[0]:.2f}; "
              f"total time {time.perf_counter() - start:.0f} s")
        return 0
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
    compare_scan(args.scan_grid, args.scan_samples)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}; "
          f"total time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
