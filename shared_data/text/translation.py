"""Parallel corpora as padded token arrays, BLEU and attention pictures, for the seq2seq project.

`load_translation(config, workdir)` reads the corpus the config names, learns (or, on resume,
reloads) one joint source+target vocabulary from the training pairs only, and returns per
split:

    {"source": int32 [N, S], "source_mask": float32 [N, S],
     "target": int32 [N, T + 1], "target_mask": float32 [N, T + 1]}

with S = max_source_len, T = max_target_len. A target row is [BOS] y_1 .. y_n [EOS] [PAD]..;
the decoder reads target[:, :-1] and is scored on target[:, 1:] where target_mask[:, 1:] is 1.
Sentences longer than the limit are cut (a cut target keeps no [EOS]).

Corpora: Multi30k task 1 de->en (train / test_2016_flickr, shared_data/text/readers.py) and
`generated`, a toy word-for-word translation drawn from a fixed seed (offline; the
quickstart and the tests). `bleu(tokenizer)` scores decoded ids against the targets with
sacrebleu on detokenized text, the same host-side evaluator for both frameworks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..runlog import SUMMARY_FILE, write_json
from .batching import pad_sequences
from .readers import ParallelText, read_multi30k
from .tokenize import BOS_ID, EOS_ID, PAD_ID, TextTokenizer, tokenizer_for_run

DATASETS = ("multi30k", "generated")
MULTI30K_TEST = "test_2016_flickr"

# The generated corpus: German words and their English translations, one for one.
_LEXICON = {
    "ein": "a", "der": "the", "hund": "dog", "katze": "cat", "mann": "man", "frau": "woman",
    "kind": "child", "rot": "red", "blau": "blue", "gross": "big", "klein": "small",
    "sieht": "sees", "hat": "has", "isst": "eats", "trinkt": "drinks", "wasser": "water",
    "brot": "bread", "ball": "ball", "haus": "house", "im": "in the", "und": "and",
    "schnell": "fast", "alt": "old", "jung": "young", "spielt": "plays", "mit": "with",
}  # fmt: skip
GENERATED_TRAIN, GENERATED_TEST = 2000, 200


@dataclass(frozen=True)
class TranslationDataset:
    """Train and test arrays (see the module doc), the run's tokenizer and the test texts."""

    name: str
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    source: str
    tokenizer: TextTokenizer
    test_sources: list[str]  # the raw test sentences (attention pictures label their tokens)

    def mean_target_length(self, split: str = "train") -> float:
        """Scored target tokens per example (after truncation): what tokens/s multiply by."""
        return float(getattr(self, split)["target_mask"][:, 1:].sum(axis=1).mean())


def generate_pairs(count: int, seed: int) -> ParallelText:
    """`count` toy sentence pairs of 3-9 words, German word i translating to English word i."""
    rng = np.random.default_rng([seed, 5])  # stream 5: the generated corpus
    words = sorted(_LEXICON)
    sources, targets = [], []
    for _ in range(count):
        chosen = [words[i] for i in rng.integers(0, len(words), rng.integers(3, 10))]
        sources.append(" ".join(chosen))
        targets.append(" ".join(_LEXICON[w] for w in chosen))
    return ParallelText(sources, targets, f"generated (seed {seed})")


def read_translation(name: str, data_dir=None) -> dict[str, ParallelText]:
    """{"train", "test"} sentence pairs of dataset `name` (one of DATASETS)."""
    if name == "multi30k":
        return {
            "train": read_multi30k("train", data_dir),
            "test": read_multi30k(MULTI30K_TEST, data_dir),
        }
    if name == "generated":
        return {
            "train": generate_pairs(GENERATED_TRAIN, seed=0),
            "test": generate_pairs(GENERATED_TEST, seed=1),
        }
    raise DataError(f"unknown translation dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _first(data: ParallelText, limit: int | None) -> ParallelText:
    if limit is None or limit >= len(data):
        return data
    return ParallelText(data.sources[:limit], data.targets[:limit], data.source)


def encode_pairs(
    data: ParallelText, tokenizer: TextTokenizer, max_source_len: int, max_target_len: int
) -> dict[str, np.ndarray]:
    """Padded arrays of one split; an empty source becomes one [EOS] (never an empty row)."""
    sources = [ids or [EOS_ID] for ids in tokenizer.encode(data.sources)]
    targets = [[BOS_ID, *ids, EOS_ID] for ids in tokenizer.encode(data.targets)]
    source, source_mask = pad_sequences(sources, max_source_len, PAD_ID)
    target, target_mask = pad_sequences(targets, max_target_len + 1, PAD_ID)
    return {
        "source": source,
        "source_mask": source_mask,
        "target": target,
        "target_mask": target_mask,
    }


def load_translation(config, workdir: str | Path | None = None) -> TranslationDataset:
    """The dataset `config` names, tokenized with the run's vocabulary (see the module doc)."""
    splits = read_translation(config.dataset, config.data_dir)
    train = _first(splits["train"], config.limit_train)
    test = _first(splits["test"], config.limit_test)
    # One vocabulary for both languages, learned from the training pairs only.
    tokenizer = tokenizer_for_run(
        workdir,
        [*train.sources, *train.targets],
        config.tokenizer,
        config.vocab_size,
        lowercase=config.lowercase,
    )
    if tokenizer.vocab_size > config.vocab_size:  # byte-level BPE never has fewer than 260
        raise DataError(
            f"field 'vocab_size' is {config.vocab_size}, but the {config.tokenizer} vocabulary "
            f"needs {tokenizer.vocab_size} ids; raise it (--set vocab_size=...)"
        )
    lengths = (config.max_source_len, config.max_target_len)
    return TranslationDataset(
        name=config.dataset,
        train=encode_pairs(train, tokenizer, *lengths),
        test=encode_pairs(test, tokenizer, *lengths),
        source=train.source,
        tokenizer=tokenizer,
        test_sources=test.sources,
    )


def add_tokens_per_s(summary: dict, workdir: str | Path, dataset: TranslationDataset) -> dict:
    """The run summary (and its summary.json) with training target tokens/s.

    tokens/s = examples/s x the mean scored target tokens of a training example (padding
    not counted); both frameworks call this after `fit`.
    """
    tokens = dataset.mean_target_length()
    rate = summary.get("train_examples_per_s")
    summary = {**summary, "target_tokens_per_example": tokens}
    summary["train_tokens_per_s"] = rate * tokens if rate else None
    write_json(Path(workdir) / SUMMARY_FILE, summary)
    return summary


def strip_ids(ids: np.ndarray) -> list[int]:
    """The ids of one decoded row up to (not including) its first [EOS], [BOS]/[PAD] dropped."""
    out = []
    for token in np.asarray(ids).tolist():
        if token == EOS_ID:
            break
        if token not in (BOS_ID, PAD_ID):
            out.append(token)
    return out


def detokenize(tokenizer: TextTokenizer, rows: np.ndarray) -> list[str]:
    """The text of each row of ids (cut at its first [EOS])."""
    return [tokenizer.decode(strip_ids(row)) for row in rows]


def corpus_bleu(hypotheses: list[str], *references: list[str], bootstrap: int = 0):
    """sacrebleu's corpus BLEU (0-100, its default 13a tokenisation) of detokenized text.

    `references`: one or more reference streams, each with one sentence per hypothesis.
    With `bootstrap` = N > 1 resamples, (BLEU, half-width of sacrebleu's 95% bootstrap
    interval over the test sentences) instead: the sampling noise of the test set itself.
    """
    import sacrebleu  # a host-side dependency of this evaluator only

    for stream in references:
        if len(stream) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses for {len(stream)} references")
    if bootstrap > 1:
        score = sacrebleu.metrics.BLEU().corpus_score(hypotheses, list(references), bootstrap)
        return float(score.score), float(score._ci)  # sacrebleu keeps the interval there
    return float(sacrebleu.corpus_bleu(hypotheses, list(references)).score)


def bleu(tokenizer: TextTokenizer, bootstrap: int = 0):
    """The Task evaluator: BLEU of `predict`'s decoded ids against the split's targets.

    `bootstrap` > 1 adds "bleu_ci95", the half-width of the 95% bootstrap interval.
    """

    def evaluate(predictions: np.ndarray, arrays) -> dict[str, float]:
        hypotheses = detokenize(tokenizer, predictions)
        references = detokenize(tokenizer, arrays["target"][: len(predictions)])
        if bootstrap > 1:
            score, half_width = corpus_bleu(hypotheses, references, bootstrap=bootstrap)
            return {"bleu": score, "bleu_ci95": half_width}
        return {"bleu": corpus_bleu(hypotheses, references)}

    return evaluate


def save_attention_maps(
    workdir: str | Path,
    epoch: int,
    tokenizer: TextTokenizer,
    sources: np.ndarray,
    outputs: np.ndarray,
    weights: np.ndarray,
) -> list[Path]:
    """One PNG per sentence, `workdir/images/attention<i>_epoch<N>.png`: rows are output tokens.

    sources [N, S] and outputs [N, L] are ids, weights [N, L, S] the decoder's attention over
    the source when it produced each output token.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    folder = Path(workdir) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (source, output, weight) in enumerate(zip(sources, outputs, weights, strict=True)):
        src = [tokenizer.tokenizer.id_to_token(t) for t in source.tolist() if t != PAD_ID]
        out = [tokenizer.tokenizer.id_to_token(t) for t in output.tolist()]
        out = out[: out.index("[EOS]") + 1] if "[EOS]" in out else out
        src, out = [t.replace("\u0120", "_") for t in src], [t.replace("\u0120", "_") for t in out]
        figure, axes = plt.subplots(figsize=(0.35 * len(src) + 1.5, 0.35 * len(out) + 1.5))
        axes.imshow(weight[: len(out), : len(src)], cmap="viridis", vmin=0.0, vmax=1.0)
        axes.set_xticks(range(len(src)), src, rotation=90, fontsize=7)
        axes.set_yticks(range(len(out)), out, fontsize=7)
        axes.set_title(f"attention, epoch {epoch}", fontsize=8)
        figure.tight_layout()
        path = folder / f"attention{i}_epoch{epoch}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        paths.append(path)
    return paths
