r"""Token datasets for the emergence metric, their controls and their plug-in entropies.

* in-context category lists (``"Paris, Rome, ..."``-style: entity, separator, entity, ...)
  built from single-token entities of a model's own tokenizer, or from any id lists;
* windows of natural text cut from a prose file shipped with the package;
* controls with the same per-position statistics but no semantics: lists mixing categories,
  windows with their tokens shuffled, and i.i.d. tokens from the per-position unigram law.

Every dataset is a fixed-length id matrix; the model is fed exactly these ids (no BOS).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from branching import validation as check

from ._common import seed_of, seed_sequence

__all__ = [
    "TokenDataset",
    "category_lists",
    "entity_words",
    "icl_lists",
    "natural_text",
    "shuffled",
    "single_token_entities",
    "text_windows",
    "unigram_control",
    "windows_from_ids",
]


@dataclass(frozen=True, repr=False)
class TokenDataset:
    """Fixed-length token windows, fed to the model as they are.

    Attributes
    ----------
    ids : int64 array of shape (n, T)
    kind : str
        ``"category"``, ``"mixed"``, ``"text"``, ``"shuffled"`` or ``"unigram"``.
    labels : int array of shape (n,) or None
        Category index of each list (category lists only).
    params : dict
        How the data were built (shots, categories, entity counts, ...).
    seed : int or None
    """

    ids: np.ndarray
    kind: str
    labels: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    seed: int | None = None

    @property
    def n(self) -> int:
        return int(self.ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    @property
    def ceiling_bits(self) -> float:
        """:math:`\\log_2 N`: no sample-based estimate can resolve more than this."""
        return math.log2(self.n)

    def prefix_entropy(self) -> np.ndarray:
        r"""Plug-in entropy :math:`H(S_{\le t})` of the empirical prefixes, in bits, per ``t``."""
        return np.array([_plugin(self.ids[:, : t + 1]) for t in range(self.length)])

    def token_entropy(self) -> np.ndarray:
        r"""Plug-in entropy :math:`H(S_t)` of the token at each position, in bits."""
        return np.array([_plugin(self.ids[:, t : t + 1]) for t in range(self.length)])

    def reference_emergence(self) -> np.ndarray:
        r""":math:`H(S_{\le t})-\frac1{t+1}\sum_{i\le t}H(S_i)`, in bits, per ``t``.

        What :math:`E_l(t)` equals for injective (generic) blocks :math:`l\ge1`: the blocks
        then preserve all information about the prefix, so both MIs are entropies.
        """
        tokens = self.token_entropy()
        return self.prefix_entropy() - np.cumsum(tokens) / np.arange(1, self.length + 1)

    def __repr__(self) -> str:
        return (f"TokenDataset({self.kind}: n={self.n}, length={self.length}, "
                f"H(S)={self.prefix_entropy()[-1]:.2f} bits, log2 N={self.ceiling_bits:.2f}, "
                f"seed={self.seed})")

    def to_pandas(self):
        """One row per position: plug-in prefix and token entropies, reference, ceiling."""
        import pandas as pd

        return pd.DataFrame({
            "position": np.arange(self.length),
            "prefix_entropy_bits": self.prefix_entropy(),
            "token_entropy_bits": self.token_entropy(),
            "reference_emergence_bits": self.reference_emergence(),
            "ceiling_bits": self.ceiling_bits,
            "kind": self.kind,
        })


def _plugin(rows: np.ndarray) -> float:
    _, counts = np.unique(rows, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def _ids(name, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1 or not np.issubdtype(
        arr.dtype, np.integer
    ) or (arr < 0).any():
        raise ValueError(f"{name} must be a non-empty 2-d array of non-negative token ids, "
                         f"got shape {arr.shape} and dtype {arr.dtype}")
    return arr.astype(np.int64)


def entity_words() -> dict[str, list[str]]:
    """The candidate entity words shipped with the package, by category.

    Returns
    -------
    dict of str to list of str
        Category name (``"animal"``, ``"colour"``, ``"country"``) to its candidate words,
        capitalised as they appear in running text and without a leading space.

    Examples
    --------
    >>> words = entity_words()
    >>> sorted(words), words["colour"][:3]
    (['animal', 'colour', 'country'], ['red', 'blue', 'green'])
    """
    text = resources.files(__package__).joinpath("entities.json").read_text(encoding="utf-8")
    return json.loads(text)


def natural_text() -> str:
    """The prose shipped with the package (a few KB of plain English paragraphs).

    Returns
    -------
    str
        The text, read as UTF-8.

    Examples
    --------
    >>> natural_text().split()[:4]
    ['The', 'river', 'rose', 'slowly']
    """
    return resources.files(__package__).joinpath("natural_text.txt").read_text(encoding="utf-8")


def _encode(lm, text: str) -> list[int]:
    if getattr(lm, "tokenizer", None) is None:
        raise ValueError(f"model {getattr(lm, 'name', lm)!r} has no tokenizer; build the "
                         "dataset from token ids (category_lists / windows_from_ids)")
    return list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])


def single_token_entities(lm, categories=None) -> dict[str, list[int]]:
    """Entities of each category that the model's tokenizer encodes as one token.

    Parameters
    ----------
    lm : LanguageModel
        A model with a tokenizer.
    categories : list of str, optional
        Categories of :func:`entity_words` to keep (default: all).

    Returns
    -------
    dict of str to list of int
        Token ids of ``" Word"`` (leading space, as inside a list) for every candidate word
        that is a single token; ids claimed by two categories are dropped from both.

    Raises
    ------
    ValueError
        For a category not in :func:`entity_words`, or a model without a tokenizer.

    Examples
    --------
    With a word-level tokenizer that knows two colours and two animals, every other word
    encodes to the one token ``[UNK]``, which both categories claim and therefore lose:

    >>> import dataclasses
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> from llm_bridge.models import tiny_model
    >>> words = ["[UNK]", ",", "red", "blue", "cat", "dog"]   # a word-level stand-in tokenizer
    >>> tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "[UNK]"))
    >>> tok.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=tok)
    >>> lm = dataclasses.replace(tiny_model(6), tokenizer=tok)
    >>> single_token_entities(lm, ["colour", "animal"])
    {'colour': [2, 3], 'animal': [4, 5]}
    """
    words = entity_words()
    categories = sorted(words) if categories is None else list(categories)
    for name in categories:
        check.choice("categories", name, words)
    found = {}
    for name in categories:
        ids = []
        for word in words[name]:
            encoded = _encode(lm, " " + word)
            if len(encoded) == 1 and encoded[0] not in ids:
                ids.append(encoded[0])
        found[name] = ids
    shared = {i for a in found for b in found if a < b for i in set(found[a]) & set(found[b])}
    return {name: [i for i in ids if i not in shared] for name, ids in found.items()}


def category_lists(entities, separator: int, *, shots: int, n: int, mixed: bool = False,
                   balance: bool = True, rng=None) -> TokenDataset:
    r"""In-context lists ``e1 sep e2 sep ... e_shots sep`` of distinct entities.

    Parameters
    ----------
    entities : dict of str to sequence of int
        Token ids of the entities of each category (disjoint categories).
    separator : int
        Token id after every entity (e.g. the comma).
    shots : int
        Entities per list (>= 1); the window length is ``2 * shots``.
    n : int
        Number of lists.
    mixed : bool
        Control without semantics: draw the entities of a list from the union of all
        categories instead of one category chosen at random.
    balance : bool
        Truncate every category to the size ``m`` of the smallest, so that pure and mixed
        lists have the same per-position token law (uniform over all ``C*m`` entities).
    rng : None, int, SeedSequence or Generator

    Returns
    -------
    TokenDataset
        ``params`` holds ``exact_prefix_entropy``: the entropy of the generating law,
        :math:`\log_2C+\log_2\frac{m!}{(m-j)!}` bits after ``j`` entities for pure lists
        and :math:`\log_2\frac{(Cm)!}{(Cm-j)!}` for mixed ones (balanced case).

    Examples
    --------
    >>> data = category_lists({"a": [1, 2, 3], "b": [4, 5, 6]}, 0, shots=2, n=4, rng=0)
    >>> data.ids.shape, sorted(set(data.ids[:, 1].tolist()))
    ((4, 4), [0])
    """
    shots = check.integer("shots", shots, low=1)
    n = check.integer("n", n, low=1)
    separator = check.integer("separator", separator, low=0)
    if not isinstance(entities, dict) or not entities:
        raise ValueError(f"entities must be a non-empty dict of category -> ids, got {entities!r:.80}")
    pools = {name: [check.integer("entities", i, low=0) for i in ids]
             for name, ids in sorted(entities.items())}
    size = min(len(ids) for ids in pools.values())
    if balance:
        pools = {name: ids[:size] for name, ids in pools.items()}
    smallest = min(len(ids) for ids in pools.values())
    union = [i for ids in pools.values() for i in ids]
    if len(set(union)) != len(union) or separator in union:
        raise ValueError("entities must be distinct across categories and differ from separator")
    if shots > smallest:
        raise ValueError(f"shots must be <= {smallest} (entities in the smallest category), "
                         f"got {shots}")
    seq = seed_sequence(rng)
    generator = np.random.default_rng(seq)
    names = list(pools)
    labels = generator.integers(len(names), size=n)
    ids = np.full((n, 2 * shots), separator, dtype=np.int64)
    for row in range(n):
        pool = union if mixed else pools[names[labels[row]]]
        ids[row, 0::2] = generator.choice(pool, size=shots, replace=False)
    exact = None
    if balance:
        c, m = len(names), size
        per_entity = [math.lgamma(m + 1) - math.lgamma(m - j + 1) for j in range(1, shots + 1)]
        if mixed:
            per_entity = [math.lgamma(c * m + 1) - math.lgamma(c * m - j + 1)
                          for j in range(1, shots + 1)]
        bits = [v / math.log(2) + (0.0 if mixed else math.log2(c)) for v in per_entity]
        exact = [bits[t // 2] for t in range(2 * shots)]
    return TokenDataset(
        ids=ids, kind="mixed" if mixed else "category", labels=None if mixed else labels,
        params={"shots": shots, "categories": names, "entities_per_category": smallest,
                "separator": separator, "balance": balance, "exact_prefix_entropy": exact},
        seed=seed_of(seq),
    )


def icl_lists(lm, *, shots: int, n: int, mixed: bool = False, categories=None,
              separator: str = ",", rng=None) -> TokenDataset:
    """Category lists from the model's own single-token entities (see :func:`category_lists`).

    Parameters
    ----------
    lm : LanguageModel
        A model with a tokenizer.
    shots, n, mixed, rng
        As in :func:`category_lists` (balanced categories).
    categories : list of str, optional
        Default: every category of :func:`entity_words`.
    separator : str
        Text of the separator token (must be one token).

    Returns
    -------
    TokenDataset
        As returned by :func:`category_lists`; ``params["words"]`` also holds the decoded
        entities used for each category.

    Raises
    ------
    ValueError
        For a model without a tokenizer, a separator that is not one token, an unknown
        category, or ``shots`` above the number of single-token entities of the smallest
        category.

    Examples
    --------
    >>> import dataclasses
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> from llm_bridge.models import tiny_model
    >>> words = ["[UNK]", ",", "red", "blue", "cat", "dog"]   # a word-level stand-in tokenizer
    >>> tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "[UNK]"))
    >>> tok.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=tok)
    >>> lm = dataclasses.replace(tiny_model(6), tokenizer=tok)
    >>> data = icl_lists(lm, shots=2, n=3, categories=["colour", "animal"], rng=0)
    >>> data.ids.shape, data.params["words"]
    ((3, 4), {'colour': ['red', 'blue'], 'animal': ['cat', 'dog']})
    """
    sep = _encode(lm, separator)
    if len(sep) != 1:
        raise ValueError(f"separator must encode to one token, got {separator!r} -> {sep}")
    entities = single_token_entities(lm, categories)
    data = category_lists(entities, sep[0], shots=shots, n=n, mixed=mixed, rng=rng)
    data.params["words"] = {
        name: [lm.tokenizer.decode([i]).strip() for i in ids[: data.params["entities_per_category"]]]
        for name, ids in entities.items()
    }
    return data


def windows_from_ids(tokens, *, length: int, n: int, rng=None) -> TokenDataset:
    """``n`` windows of ``length`` consecutive tokens starting at uniform random offsets.

    Parameters
    ----------
    tokens : sequence of int
        A token stream (non-negative ids).
    length : int
        Window length, ``2 <= length <= len(tokens)``.
    n : int
        Number of windows, ``>= 1`` (drawn with replacement: windows may repeat).
    rng : None, int, SeedSequence or Generator
        Randomness of the offsets.

    Returns
    -------
    TokenDataset
        Of kind ``"text"``; ``params`` holds ``length`` and the number of distinct offsets.

    Raises
    ------
    ValueError
        For an empty or negative token stream, or ``length`` or ``n`` out of range.

    Examples
    --------
    >>> windows_from_ids(list(range(10)), length=3, n=2, rng=0).ids.shape
    (2, 3)
    """
    tokens = _ids("tokens", np.asarray(tokens)[None, :])[0]
    length = check.integer("length", length, low=2)
    if length > tokens.size:
        raise ValueError(f"length must be <= {tokens.size} (tokens available), got {length}")
    n = check.integer("n", n, low=1)
    seq = seed_sequence(rng)
    starts = np.random.default_rng(seq).integers(0, tokens.size - length + 1, size=n)
    ids = tokens[starts[:, None] + np.arange(length)]
    return TokenDataset(ids=ids, kind="text",
                        params={"length": length, "distinct_starts": tokens.size - length + 1},
                        seed=seed_of(seq))


def text_windows(lm, *, length: int = 8, n: int, text: str | None = None, rng=None) -> TokenDataset:
    """Windows of the shipped prose (or ``text``) encoded by the model's tokenizer (no BOS).

    Parameters
    ----------
    lm : LanguageModel
        A model with a tokenizer; the text is encoded without special tokens.
    length : int
        Tokens per window, ``>= 2``.
    n : int
        Number of windows (see :func:`windows_from_ids`).
    text : str, optional
        Text to cut the windows from (default: :func:`natural_text`).
    rng : None, int, SeedSequence or Generator
        Randomness of the window offsets.

    Returns
    -------
    TokenDataset
        Of kind ``"text"``; ``params["source"]`` records where the text came from.

    Raises
    ------
    ValueError
        For a model without a tokenizer, or ``length`` above the number of tokens of the
        text.

    Examples
    --------
    >>> import dataclasses
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> from transformers import PreTrainedTokenizerFast
    >>> from llm_bridge.models import tiny_model
    >>> words = ["[UNK]", ",", "red", "blue", "cat", "dog"]   # a word-level stand-in tokenizer
    >>> tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, "[UNK]"))
    >>> tok.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=tok)
    >>> lm = dataclasses.replace(tiny_model(6), tokenizer=tok)
    >>> lm.tokenizer("red cat, blue dog", add_special_tokens=False)["input_ids"]
    [2, 4, 1, 3, 5]
    >>> text_windows(lm, length=3, n=2, text="red cat, blue dog", rng=0).ids
    array([[1, 3, 5],
           [4, 1, 3]])
    """
    data = windows_from_ids(_encode(lm, natural_text() if text is None else text),
                            length=length, n=n, rng=rng)
    data.params["source"] = "package prose" if text is None else "text argument"
    return data


def shuffled(data: TokenDataset, *, rng=None) -> TokenDataset:
    """The same windows with their tokens permuted independently within each window.

    Parameters
    ----------
    data : TokenDataset
        The windows to shuffle (left unchanged).
    rng : None, int, SeedSequence or Generator
        Randomness of the permutations.

    Returns
    -------
    TokenDataset
        Of kind ``"shuffled"``: every window holds the same multiset of tokens in a random
        order; ``params`` are those of ``data`` plus ``"from"`` (the kind of ``data``).

    Examples
    --------
    >>> data = windows_from_ids(list(range(10)), length=4, n=3, rng=0)
    >>> mixed = shuffled(data, rng=1)
    >>> mixed.kind, bool((np.sort(mixed.ids, axis=1) == np.sort(data.ids, axis=1)).all())
    ('shuffled', True)
    """
    seq = seed_sequence(rng)
    generator = np.random.default_rng(seq)
    ids = np.array([row[generator.permutation(row.size)] for row in data.ids])
    return TokenDataset(ids=ids, kind="shuffled", params={**data.params, "from": data.kind},
                        seed=seed_of(seq))


def unigram_control(data: TokenDataset, *, rng=None) -> TokenDataset:
    """I.i.d. tokens: each column resampled from its own empirical law (rows decoupled).

    Parameters
    ----------
    data : TokenDataset
        The windows whose per-position token laws are kept (left unchanged).
    rng : None, int, SeedSequence or Generator
        Randomness of the resampling.

    Returns
    -------
    TokenDataset
        Of kind ``"unigram"``, of the same shape: column ``t`` is drawn with replacement
        from column ``t`` of ``data``; ``params`` are those of ``data`` plus ``"from"``.

    Examples
    --------
    >>> data = windows_from_ids(list(range(10)), length=4, n=3, rng=0)
    >>> iid = unigram_control(data, rng=1)
    >>> iid.kind, all(set(iid.ids[:, t]) <= set(data.ids[:, t]) for t in range(4))
    ('unigram', True)
    """
    seq = seed_sequence(rng)
    generator = np.random.default_rng(seq)
    ids = np.stack([generator.choice(col, size=col.size, replace=True) for col in data.ids.T],
                   axis=1)
    return TokenDataset(ids=ids, kind="unigram", params={**data.params, "from": data.kind},
                        seed=seed_of(seq))
