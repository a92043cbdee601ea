r"""Neural mutual-information estimators (torch): InfoNCE and MINE.

Both train a critic on the training split (after the same standardisation + PCA as the
closed-form estimators, fitted on that split) and read the bound out on the held-out split,
for ``n_seeds`` random splits and initialisations.  Results are in bits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from branching import validation as check

from ._common import LOG2E, Projection, check_dim, degenerate, paired, seed_sequence, split
from .mi import MIEstimate, _finish, _splits

__all__ = ["infonce_mi", "mine_mi"]


def _mlp(sizes, generator) -> torch.nn.Sequential:
    """A ReLU MLP with He-normal weights drawn from ``generator`` (global state untouched)."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.utils.skip_init(torch.nn.Linear, fan_in, fan_out, dtype=torch.float32)
        with torch.no_grad():
            linear.weight.copy_(
                torch.randn(fan_out, fan_in, generator=generator) * math.sqrt(2.0 / fan_in)
            )
            linear.bias.zero_()
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _prepare(x, y, dim, test_fraction, n_seeds, min_split, what):
    x, y = paired(x, y, min_samples=4)
    n = x.shape[0]
    test_fraction, n_seeds, n_train, n_test = _splits(n, test_fraction, n_seeds)
    if n_train < min_split or n_test < min_split:
        raise ValueError(
            f"n_samples={n} with test_fraction={test_fraction} leaves {n_train} training and "
            f"{n_test} held-out rows; {what} needs at least {min_split} in each"
        )
    return x, y, n, test_fraction, n_seeds, n_train, n_test, check_dim(dim, n_train)


def _features(x, y, tr, te, dim):
    px, py = Projection(x[tr], dim), Projection(y[tr], dim)

    def tensor(a):
        return torch.as_tensor(a, dtype=torch.float32)

    return tensor(px(x[tr])), tensor(py(y[tr])), tensor(px(x[te])), tensor(py(y[te]))


def _infonce_bound(gx, hy):
    """Mean InfoNCE bound of one batch, in nats: <s_ii - logsumexp_j s_ij> + log K."""
    scores = gx @ hy.T
    k = scores.shape[0]
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(k)


def _batched_infonce(g, h, a, b, batch_size, generator):
    order = torch.randperm(a.shape[0], generator=generator)
    values = []
    for start in range(0, a.shape[0] - batch_size + 1, batch_size):
        rows = order[start:start + batch_size]
        values.append(float(_infonce_bound(g(a[rows]), h(b[rows]))))
    return float(np.mean(values)) * LOG2E


def infonce_mi(x, y, *, dim: int = 32, batch_size: int = 128, hidden: int = 128,
               embedding: int = 32, steps: int = 500, learning_rate: float = 1e-3,
               test_fraction: float = 0.5, n_seeds: int = 3, rng=None) -> MIEstimate:
    r"""InfoNCE lower bound on the mutual information, trained and read out on separate splits.

    Parameters
    ----------
    x, y : array of shape (n, dx) and (n, dy)
        Paired samples.
    dim : int
        Principal components kept for each variable (fitted on the training split).
    batch_size : int
        :math:`K`, the number of pairs contrasted at once (>= 2); the bound cannot exceed
        :math:`\log_2 K` bits.
    hidden, embedding : int
        Width of the hidden layer and of the embedding of the separable critic.
    steps : int
        Adam steps on random training batches.
    learning_rate : float
    test_fraction : float
        Held-out fraction, in (0, 1).
    n_seeds : int
        Random splits and critic initialisations.
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    MIEstimate
        ``values``: the bound averaged over held-out batches; ``train_values``: the same on
        the training split after training; ``ceiling_bits`` = :math:`\log_2K`.

    Raises
    ------
    ValueError
        For bad settings, or fewer than ``batch_size`` rows in either split.

    Notes
    -----
    With the separable critic :math:`f(x,y)=g(x)^\top h(y)` (two one-hidden-layer MLPs),

    .. math:: I(X;Y)\ge\mathbb E\Bigl[\frac1K\sum_i\log\frac{e^{f(x_i,y_i)}}
              {\frac1K\sum_je^{f(x_i,y_j)}}\Bigr]

    (van den Oord et al. 2018; Poole et al. 2019).  The right side is at most
    :math:`\log K`, so InfoNCE saturates at :math:`\log_2K` bits whatever the true MI.

    Examples
    --------
    >>> from llm_bridge.emergence.mi import correlated_gaussians
    >>> x, y, truth = correlated_gaussians(1000, 2, rho=0.8, rng=0)
    >>> est = infonce_mi(x, y, dim=2, batch_size=64, steps=150, n_seeds=1, rng=0)
    >>> round(truth, 2), abs(est.bits - truth) < 0.5, est.ceiling_bits
    (1.47, True, 6.0)
    """
    batch_size = check.integer("batch_size", batch_size, low=2)
    hidden = check.integer("hidden", hidden, low=1)
    embedding = check.integer("embedding", embedding, low=1)
    steps = check.integer("steps", steps, low=1)
    learning_rate = check.real("learning_rate", learning_rate, low=0.0, low_open=True)
    x, y, n, test_fraction, n_seeds, n_train, n_test, dim = _prepare(
        x, y, dim, test_fraction, n_seeds, batch_size, f"InfoNCE with batch_size={batch_size}"
    )
    seq = seed_sequence(rng)
    held, train = [], []
    for child in seq.spawn(n_seeds):
        generator = np.random.default_rng(child)
        tr, te = split(n, test_fraction, generator)
        if degenerate(x[tr], y[tr]):
            held.append(0.0)
            train.append(0.0)
            continue
        a_tr, b_tr, a_te, b_te = _features(x, y, tr, te, dim)
        torch_gen = torch.Generator().manual_seed(int(generator.integers(2**62)))
        g = _mlp([a_tr.shape[1], hidden, embedding], torch_gen)
        h = _mlp([b_tr.shape[1], hidden, embedding], torch_gen)
        optimiser = torch.optim.Adam([*g.parameters(), *h.parameters()], lr=learning_rate)
        for _ in range(steps):
            rows = torch.randint(0, n_train, (batch_size,), generator=torch_gen)
            loss = -_infonce_bound(g(a_tr[rows]), h(b_tr[rows]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            held.append(_batched_infonce(g, h, a_te, b_te, batch_size, torch_gen))
            train.append(_batched_infonce(g, h, a_tr, b_tr, batch_size, torch_gen))
    return _finish(
        "infonce", held, train, n_train, n_test, math.log2(batch_size),
        {"dim": dim, "batch_size": batch_size, "steps": steps, "test_fraction": test_fraction},
        seq,
    )


def _shifted(n, generator):
    """Index pairs (i, j) with j != i: a random permutation paired with its cyclic shift."""
    order = torch.randperm(n, generator=generator)
    return order, torch.roll(order, 1)


def _dv(critic, a, b, generator):
    """Donsker-Varadhan value in nats and the log-mean-exp of the marginal term."""
    joint = critic(torch.cat([a, b], dim=1)).squeeze(1)
    i, j = _shifted(a.shape[0], generator)
    marginal = critic(torch.cat([a[i], b[j]], dim=1)).squeeze(1)
    log_mean_exp = torch.logsumexp(marginal, dim=0) - math.log(marginal.shape[0])
    return joint.mean() - log_mean_exp, log_mean_exp


def mine_mi(x, y, *, dim: int = 32, batch_size: int = 256, hidden: int = 128,
            steps: int = 500, learning_rate: float = 1e-3, ema: float = 0.01,
            readout: str = "heldout", test_fraction: float = 0.5, n_seeds: int = 3,
            rng=None) -> MIEstimate:
    r"""MINE (Donsker-Varadhan) estimate with the moving-average bias correction.

    Parameters
    ----------
    x, y : array of shape (n, dx) and (n, dy)
        Paired samples.
    dim : int
        Principal components kept for each variable (fitted on the training split).
    batch_size : int
        Pairs per training step (>= 2); ignored by ``readout="max_train"``, which uses the
        whole training split at every step.
    hidden : int
        Width of the two hidden layers of the critic :math:`T([x;y])`.
    steps : int
        Adam steps.
    learning_rate : float
    ema : float
        Rate :math:`\alpha` in (0, 1] of the moving average of :math:`\mathbb E e^{T}` over
        marginal pairs; 1 gives the plain (biased-gradient) DV objective.
    readout : {"heldout", "max_train"}
        ``"heldout"``: train on random batches, read the DV bound out once on the held-out
        split.  ``"max_train"``: the original pipeline's read-out -- full-batch steps, no
        bias correction, and the *maximum over training steps* of the training-set DV
        value; biased upwards, provided to measure that bias.
    test_fraction : float
    n_seeds : int
        Random splits and critic initialisations.
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    MIEstimate
        ``values``: the held-out DV value (``"heldout"``) or the maximum over steps of the
        training DV value (``"max_train"``); ``train_values``: the training DV value after
        training (``"heldout"``) or again the maximum (``"max_train"``).

    Raises
    ------
    ValueError
        For bad settings or too few rows.

    Notes
    -----
    The Donsker-Varadhan bound :math:`I(X;Y)\ge\mathbb E_{P_{XY}}[T]-\log\mathbb
    E_{P_X\otimes P_Y}[e^T]` is maximised over an MLP critic :math:`T`; marginal pairs pair
    each :math:`x` with the :math:`y` of another row (a random permutation against its
    cyclic shift, so no row is paired with itself).  The gradient of the log term is biased
    on mini-batches; MINE replaces its denominator :math:`\mathbb E[e^T]` by a moving
    average (Belghazi et al. 2018, *Mutual Information Neural Estimation*, Sec. 3.2).  The
    held-out read-out is not capped by the batch size, but with ``m`` held-out pairs it
    cannot reliably exceed :math:`O(\log m)` (McAllester & Stratos 2020).

    Examples
    --------
    >>> from llm_bridge.emergence.mi import correlated_gaussians
    >>> x, y, truth = correlated_gaussians(1000, 2, rho=0.8, rng=0)
    >>> est = mine_mi(x, y, dim=2, batch_size=128, steps=150, n_seeds=1, rng=0)
    >>> round(truth, 2), abs(est.bits - truth) < 0.5
    (1.47, True)
    """
    batch_size = check.integer("batch_size", batch_size, low=2)
    hidden = check.integer("hidden", hidden, low=1)
    steps = check.integer("steps", steps, low=1)
    learning_rate = check.real("learning_rate", learning_rate, low=0.0, low_open=True)
    ema = check.real("ema", ema, low=0.0, high=1.0, low_open=True)
    readout = check.choice("readout", readout, {"heldout", "max_train"})
    min_split = 2 if readout == "max_train" else batch_size
    x, y, n, test_fraction, n_seeds, n_train, n_test, dim = _prepare(
        x, y, dim, test_fraction, n_seeds, min_split, f"MINE with batch_size={batch_size}"
    )
    seq = seed_sequence(rng)
    held, train = [], []
    for child in seq.spawn(n_seeds):
        generator = np.random.default_rng(child)
        tr, te = split(n, test_fraction, generator)
        if degenerate(x[tr], y[tr]):
            held.append(0.0)
            train.append(0.0)
            continue
        a_tr, b_tr, a_te, b_te = _features(x, y, tr, te, dim)
        torch_gen = torch.Generator().manual_seed(int(generator.integers(2**62)))
        critic = _mlp([a_tr.shape[1] + b_tr.shape[1], hidden, hidden, 1], torch_gen)
        optimiser = torch.optim.Adam(critic.parameters(), lr=learning_rate)
        if readout == "max_train":
            best = -math.inf
            for _ in range(steps):
                value, _ = _dv(critic, a_tr, b_tr, torch_gen)
                best = max(best, float(value.detach()))
                optimiser.zero_grad()
                (-value).backward()
                optimiser.step()
            held.append(best * LOG2E)
            train.append(best * LOG2E)
            continue
        log_average = None
        for _ in range(steps):
            rows = torch.randint(0, n_train, (batch_size,), generator=torch_gen)
            joint_mean, log_mean_exp = _dv(critic, a_tr[rows], b_tr[rows], torch_gen)
            joint_mean = joint_mean + log_mean_exp  # E_P[T] alone
            current = log_mean_exp.detach()
            if log_average is None:
                log_average = current
            else:
                log_average = torch.logaddexp(
                    math.log1p(-ema) + log_average if ema < 1 else torch.tensor(-math.inf),
                    math.log(ema) + current,
                )
            # gradient of E[e^T] / moving average replaces that of log E[e^T]
            loss = -(joint_mean - torch.exp(log_mean_exp - log_average))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            held.append(float(_dv(critic, a_te, b_te, torch_gen)[0]) * LOG2E)
            train.append(float(_dv(critic, a_tr, b_tr, torch_gen)[0]) * LOG2E)
    return _finish(
        "mine", held, train, n_train, n_test, None,
        {"dim": dim, "batch_size": batch_size, "steps": steps, "ema": ema, "readout": readout,
         "test_fraction": test_fraction},
        seq,
    )
