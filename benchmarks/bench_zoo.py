"""Training throughput of the zoo's models against the machine's matmul bound.

Prints, in one run, for every size of a family (default: the ``default`` family):

1. the matrix-multiply bound: GFLOP/s of ``torch.matmul`` on 1024 x 1024 float32 matrices
   with the training's thread count (best of 5, per wall-second and per CPU-second),
   measured before and after the throughput rows, the larger value being used;
2. training tokens per second (prompt + answer positions of every sequence, forward and
   backward) of :func:`llm_bridge.zoo.train_model`, and the achieved GFLOP/s as a fraction
   of the bound.  By default every size trains its whole schedule from scratch, as
   ``zoo train`` does (model construction, every checkpoint, first-call allocations
   included).  With ``--steps N`` each size instead trains ``--warm`` steps untimed and is
   timed over ``N`` more steps resumed from its last checkpoint (cache verification and
   loading included, so a short window overweights those fixed costs).  FLOPs per
   token of a training step are counted as ``6 * (P_body + M * d) + 6 * L * 2T * d``: the
   parameters that take part in matrix products (every block, plus the output layer;
   the input embedding is a lookup) times 2 for the forward and 4 for the backward pass,
   plus the attention scores and weighted sums over a context of ``2T`` positions;
3. the time the whole family needs at this throughput for ``train.steps`` steps, per
   wall-clock and per CPU time (the CPU-time figure is insensitive to other processes
   competing for the cores; on a busy machine the wall-clock figure mostly measures the
   competition).

Run: ``python benchmarks/bench_zoo.py [--family quick|default] [--threads 1] [--steps N]``
(about five minutes for the default family's whole training on one idle core).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from llm_bridge.zoo import get_family, train_model


def matmul_bound(threads: int, size: int = 1024, repeats: int = 5) -> tuple[float, float]:
    """Best GFLOP/s per wall-second and per CPU-second of a float32 matrix product."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)
        b = torch.randn(size, size, generator=generator)
        torch.matmul(a, b)
        wall, cpu = float("inf"), float("inf")
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            torch.matmul(a, b)
            wall = min(wall, time.perf_counter() - w0)
            cpu = min(cpu, time.process_time() - c0)
    finally:
        torch.set_num_threads(before)
    flops = 2 * size**3
    return flops / wall / 1e9, flops / cpu / 1e9


def flops_per_token(family, index: int) -> float:
    """Training FLOPs per position of a sequence (see the module docstring)."""
    size, task = family.sizes[index], family.task
    d, L = size.hidden_size, size.n_layers
    matmul_parameters = size.n_parameters(task.M) - task.M * d  # the input embedding is a lookup
    return 6.0 * matmul_parameters + 6.0 * L * task.context_length * d


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="default", choices=("quick", "default"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (default 1, as train_family and "
                             "`zoo train` use)")
    parser.add_argument("--steps", type=int, default=None,
                        help="time N steps after --warm untimed ones (default: the whole "
                             "training schedule from scratch)")
    parser.add_argument("--warm", type=int, default=30, help="untimed steps first with --steps")
    args = parser.parse_args(argv)
    family = get_family(args.family)
    cfg = family.train
    bound_before = matmul_bound(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, size in enumerate(family.sizes):
            start, stop = 0, cfg.steps
            if args.steps is not None:
                warm = train_model(family, i, cache_dir=tmp, max_step=args.warm,
                                   threads=args.threads, progress=False)
                start, stop = warm.steps[-1], args.warm + args.steps  # resumes at start
            w0, c0 = time.perf_counter(), time.process_time()
            train_model(family, i, cache_dir=tmp, max_step=stop, threads=args.threads,
                        progress=False)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            trained = stop - start
            tokens = trained * cfg.batch_size * family.task.context_length
            rows.append((size, size.n_parameters(family.task.M), tokens / wall, tokens / cpu,
                         flops_per_token(family, i)))
    bound_after = matmul_bound(args.threads)
    bound_wall = max(bound_before[0], bound_after[0])
    bound_cpu = max(bound_before[1], bound_after[1])
    print(f"family {family.name}: {family.task.name}, batch {cfg.batch_size}, "
          f"{cfg.steps} steps per model, {args.threads} thread(s)")
    print(f"matmul bound: {bound_wall:.1f} GFLOP/s per wall-second, {bound_cpu:.1f} per "
          f"CPU-second (before {bound_before[0]:.1f}/{bound_before[1]:.1f}, after "
          f"{bound_after[0]:.1f}/{bound_after[1]:.1f})")
    print(f"{'size':>12} {'params':>9} {'tok/s wall':>11} {'tok/s cpu':>10} "
          f"{'GFLOP/s':>8} {'of bound':>9} {'cpu ratio':>9}")
    total_wall = total_cpu = 0.0
    for size, n, rate_wall, rate_cpu, fpt in rows:
        gflops_wall, gflops_cpu = rate_wall * fpt / 1e9, rate_cpu * fpt / 1e9
        print(f"{size.name:>12} {n:>9,} {rate_wall:>11,.0f} {rate_cpu:>10,.0f} "
              f"{gflops_wall:>8.2f} {gflops_wall / bound_wall:>9.1%} "
              f"{gflops_cpu / bound_cpu:>9.1%}")
        tokens = cfg.steps * cfg.batch_size * family.task.context_length
        total_wall += tokens / rate_wall
        total_cpu += tokens / rate_cpu
    print(f"whole family at these rates: {total_wall / 60:.1f} min wall-clock, "
          f"{total_cpu / 60:.1f} min CPU time ({args.threads} thread(s); the wall-clock time on "
          f"idle cores lies between the CPU time divided by the thread count and the CPU time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
