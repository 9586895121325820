"""Vocabularies from Hugging Face `tokenizers`: byte-level BPE, or whole words for comparison.

A vocabulary is trained on the training split only, saved with the run as `tokenizer.json`
(the library's own format: model, merges, pre-tokenizer and decoder in one file) and
reloaded from there on resume and export, so ids never change under a trained model.

* ``bpe`` -- byte-level BPE (GPT-2's scheme): every string has an encoding, no [UNK], and
  decoding gives the text back exactly.
* ``word`` -- one id per whitespace-separated word seen in training (most frequent first);
  other words are [UNK]. Round trips hold for text made only of known words.
* ``wordpiece`` -- not trained: BERT's uncased WordPiece vocabulary (30,522 ids), read from
  the pretrained encoder it belongs to (shared_data/text/encoders.py), for that encoder.
  A model reads each text framed as [CLS] ... [SEP], as BERT was trained.

The trained vocabularies start with the same special tokens, so [PAD] is id 0 everywhere;
BERT's keeps its own ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102), so code that needs
[UNK] asks the tokenizer (`unk_id`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ..errors import DataError

KINDS = ("bpe", "word", "wordpiece")
PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3 in every vocabulary
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
CLS, SEP = "[CLS]", "[SEP]"  # BERT's sentence frame (wordpiece)
TOKENIZER_FILE = "tokenizer.json"

_MODEL_KINDS = {"BPE": "bpe", "WordLevel": "word", "WordPiece": "wordpiece"}


class TextTokenizer:
    """A trained `tokenizers.Tokenizer` with the calls the data layer needs."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        model_type = json.loads(tokenizer.to_str())["model"]["type"]
        if model_type not in _MODEL_KINDS:
            raise DataError(f"tokenizer model {model_type!r} is none of {list(_MODEL_KINDS)}")
        self.kind = _MODEL_KINDS[model_type]
        # A pretrained tokenizer.json may pad and truncate on its own; the data layer does both.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        if self.kind == "wordpiece":  # BERT's own ids; the data layer pads with id 0
            missing = [t for t in (PAD, UNK, CLS, SEP) if tokenizer.token_to_id(t) is None]
            if missing or tokenizer.token_to_id(PAD) != PAD_ID:
                raise DataError(
                    f"tokenizer: a BERT vocabulary needs [PAD] at id 0 and [UNK], [CLS], [SEP] "
                    f"(missing: {missing or 'none'}; [PAD] is {tokenizer.token_to_id(PAD)})"
                )
            return
        for expected, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected:
                raise DataError(f"tokenizer: {token} must be id {expected} (special tokens first)")

    @property
    def vocab_size(self) -> int:
        """Ids run over [0, vocab_size), special tokens included."""
        return self.tokenizer.get_vocab_size()

    @property
    def unk_id(self) -> int:
        """The id of [UNK] (1, or 100 in BERT's vocabulary)."""
        return self.tokenizer.token_to_id(UNK)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens added."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def model_inputs(self, texts: Sequence[str], max_len: int) -> list[list[int]]:
        """The ids a model reads of each text: at most `max_len`, never empty.

        A text with no token becomes one [UNK]. A wordpiece text is cut to max_len - 2 ids
        and framed as [CLS] ids [SEP], so a long sentence keeps its [SEP] too.
        """
        ids = [sequence or [self.unk_id] for sequence in self.encode(texts)]
        if self.kind != "wordpiece":
            return [sequence[:max_len] for sequence in ids]
        if max_len < 3:
            raise ValueError(f"wordpiece inputs need max_len >= 3 ([CLS] x [SEP]), got {max_len}")
        cls, sep = self.tokenizer.token_to_id(CLS), self.tokenizer.token_to_id(SEP)
        return [[cls, *sequence[: max_len - 2], sep] for sequence in ids]

    def tokens(self, text: str) -> list[str]:
        """The token strings of one text (to read what the vocabulary does)."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens ([PAD], [BOS], [EOS]) skipped."""
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        # Byte-level BPE marks each word's leading space; the first word got one added.
        return text[1:] if self.kind == "bpe" and text.startswith(" ") else text

    def save(self, path: str | Path) -> Path:
        """Write tokenizer.json (the library's format) to `path` (a file or a run folder)."""
        path = Path(path)
        path = path / TOKENIZER_FILE if path.is_dir() else path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))
        return path


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "bpe",
    vocab_size: int = 8000,
    lowercase: bool = False,
    min_count: int = 1,
    extra_words: Iterable[str] = (),
) -> TextTokenizer:
    """A vocabulary of at most `vocab_size` ids learned from `texts` (the training split).

    `min_count`: a word (``word``) or a merge (``bpe``) seen fewer times is left out.
    `extra_words` (``word`` only): after the training words, these words in their order,
    until the vocabulary holds `vocab_size` ids (pretrained vectors' most frequent words,
    so that a word never seen in training still has its pretrained row).
    """
    if kind not in KINDS:
        raise ValueError(f"tokenizer kind must be one of {KINDS}, got {kind!r}")
    if kind == "wordpiece":
        return pretrained_tokenizer(vocab_size)
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens")
    texts = list(texts)
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())  # byte-level: no [UNK] needed
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_count,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size,
            min_frequency=min_count,
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    if kind == "word":
        tokenizer = _with_extra_words(tokenizer, extra_words, vocab_size)
    elif any(True for _ in extra_words):
        raise ValueError("extra_words extend a word vocabulary; this one is bpe")
    return TextTokenizer(tokenizer)


def _with_extra_words(tokenizer: Tokenizer, words: Iterable[str], vocab_size: int) -> Tokenizer:
    """`tokenizer` (WordLevel) with new ids for `words` it lacks, up to vocab_size ids."""
    vocab = tokenizer.get_vocab()
    size = len(vocab)
    for word in words:
        if size >= vocab_size:
            break
        if word not in vocab:
            vocab[word] = size
            size += 1
    if size == tokenizer.get_vocab_size():
        return tokenizer
    extended = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    extended.pre_tokenizer = tokenizer.pre_tokenizer
    extended.normalizer = tokenizer.normalizer
    return extended


def pretrained_tokenizer(vocab_size: int | None = None) -> TextTokenizer:
    """BERT's uncased WordPiece vocabulary, as its pretrained encoder ships it (not trained)."""
    from .encoders import wordpiece_file

    tokenizer = load_tokenizer(wordpiece_file())
    if vocab_size is not None and tokenizer.vocab_size > vocab_size:
        raise ValueError(
            f"the wordpiece vocabulary has {tokenizer.vocab_size} ids; vocab_size={vocab_size} "
            "is too small for it"
        )
    return tokenizer


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """Read a tokenizer.json written by `TextTokenizer.save` (a file or a run folder)."""
    path = Path(path)
    path = path / TOKENIZER_FILE if path.is_dir() else path
    try:
        return TextTokenizer(Tokenizer.from_file(str(path)))
    except FileNotFoundError:
        raise DataError(f"{path}: no tokenizer here; train one (start the run anew)") from None
    except Exception as exc:  # the library raises a bare Exception on bad JSON
        raise DataError(
            f"{path}: not a readable tokenizer.json ({exc}); delete it to train a new "
            "vocabulary, which makes the run's checkpoints unusable: start a new run"
        ) from exc


def tokenizer_for_run(
    workdir: str | Path | None, texts: Iterable[str], kind: str, vocab_size: int, **options
) -> TextTokenizer:
    """The run's vocabulary: `workdir/tokenizer.json` when it exists (resume), else trained.

    A newly trained one is saved there before training starts, so a resumed or exported run
    reads the ids its model was trained on.
    """
    path = Path(workdir) / TOKENIZER_FILE if workdir is not None else None
    if path is not None and path.is_file():
        tokenizer = load_tokenizer(path)
        if tokenizer.kind != kind or tokenizer.vocab_size > vocab_size:
            raise DataError(
                f"{path}: a {tokenizer.kind} vocabulary of {tokenizer.vocab_size} ids, but the "
                f"config asks for {kind} with at most {vocab_size}; start a new run"
            )
        return tokenizer
    tokenizer = train_tokenizer(texts, kind, vocab_size, **options)
    if path is not None:
        tokenizer.save(path)
    return tokenizer
