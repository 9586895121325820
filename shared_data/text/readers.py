"""Readers of the text corpora in their published formats, with errors that name the file.

* rt-polarity (Pang & Lee's sentence polarity v1.0): `rt-polarity.pos` / `.neg`, one
  sentence a line, Windows-1252 bytes (the original release) or UTF-8 (later re-encodings).
* SST-2 in GLUE's layout: `train.tsv` / `dev.tsv` with a `sentence<TAB>label` header, UTF-8
  (`test.tsv` has no labels and is not read).
* Multi30k task 1: `<split>.de.gz` / `<split>.en.gz`, gzipped UTF-8, line i of one file the
  translation of line i of the other.

Folders are found as every dataset's are (shared_data/sources.py): `--data-dir`, then
$ROADMAP_DATA_DIR, then the download cache, each as `<root>/<name>/` or `<root>/` itself.
Every problem is a `DataError` naming the file and what to do about it.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..sources import ENV_VAR, candidate_dirs, find_dataset_dir, resolve_file

RT_POLARITY_FILES = {"pos": "rt-polarity.pos", "neg": "rt-polarity.neg"}
SST2_FILES = {"train": "train.tsv", "dev": "dev.tsv"}
SST2_HEADER = ("sentence", "label")
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
MULTI30K_LANGUAGES = ("de", "en")

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class LabelledText:
    """Sentences with integer labels (0 negative, 1 positive), in file order."""

    texts: list[str]
    labels: list[int]
    source: str  # the files they came from

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows) -> LabelledText:
        """The examples at `rows` (indices), in that order."""
        rows = list(rows)
        texts, labels = [self.texts[i] for i in rows], [self.labels[i] for i in rows]
        return LabelledText(texts, labels, self.source)


@dataclass(frozen=True)
class ParallelText:
    """Aligned sentence pairs: sources[i] translates to targets[i]."""

    sources: list[str]
    targets: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.sources)


def _hint(name: str, files: list[str]) -> str:
    return (
        f"point --data-dir or ${ENV_VAR} at a folder holding {name}/ (with {', '.join(files)}); "
        "the files and their formats are described in ../shared/data/README.md"
    )


def _read_bytes(path: Path, hint: str) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc}); {hint}") from exc
    # Sniff the content, not the name: a gunzipped copy may keep its .gz name, or vice versa.
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip data ({exc}); {hint}") from exc


def decode_lines(path: Path, encodings: tuple[str, ...], hint: str) -> list[str]:
    """The file's lines (line ends and surrounding whitespace stripped), decoded strictly.

    The first of `encodings` that decodes every byte wins; none decoding is a DataError that
    names the first bad byte's line and column.
    """
    path = Path(path)
    data = _read_bytes(path, hint)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise DataError(
            f"{path}: holds NUL bytes or a UTF-16 byte-order mark, so it is UTF-16 or binary, "
            f"not text in {' or '.join(encodings)}; re-save it as UTF-8. {hint}"
        )
    first_error = None
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as exc:
            first_error = first_error or exc
            continue
        return [line.strip() for line in text.removeprefix("\ufeff").splitlines()]
    line = data.count(b"\n", 0, first_error.start) + 1
    column = first_error.start - (data.rfind(b"\n", 0, first_error.start) + 1) + 1
    byte = data[first_error.start : first_error.start + 1].hex()
    raise DataError(
        f"{path}: line {line}, column {column}: byte 0x{byte} is not valid "
        f"{' or '.join(encodings)}; the file has another encoding or is damaged: re-save it "
        f"as UTF-8, or fetch the original again. {hint}"
    )


def _find_folder(name: str, files: list[str], data_dir) -> Path:
    """The folder of dataset `name` holding at least its first file; a DataError otherwise."""
    folder = find_dataset_dir(name, files[:1], data_dir)
    if folder is None:
        searched = "\n  ".join(str(d) for d in candidate_dirs(name, data_dir))
        raise DataError(
            f"{name}: {files[0]} not found in any of:\n  {searched}\n{_hint(name, files)}"
        )
    return folder


def _require(folder: Path, name: str, filename: str, what: str, files: list[str]) -> Path:
    path = resolve_file(folder, filename)
    if path is None:
        raise DataError(
            f"{folder / filename}: missing ({what} of {name}; the folder has "
            f"{', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'}); "
            f"{_hint(name, files)}"
        )
    return path


def _nonempty(lines: list[str], path: Path, hint: str) -> list[str]:
    sentences = [line for line in lines if line]
    if not sentences:
        raise DataError(f"{path}: holds no sentence (empty file?); {hint}")
    return sentences


def read_rt_polarity(data_dir=None) -> LabelledText:
    """Pang & Lee's 5,331 positive and 5,331 negative sentences: positives first, label 1."""
    files = list(RT_POLARITY_FILES.values())
    folder = _find_folder("rt-polarity", files, data_dir)
    hint = _hint("rt-polarity", files)
    texts: list[str] = []
    labels: list[int] = []
    for label, key in ((1, "pos"), (0, "neg")):
        path = _require(folder, "rt-polarity", RT_POLARITY_FILES[key], f"the {key} half", files)
        # The original release is Windows-1252; later copies were converted to UTF-8. A
        # cp1252 file is rarely valid UTF-8 (its 0x80-0xFF bytes stand alone), so try UTF-8 first.
        sentences = _nonempty(decode_lines(path, ("utf-8", "cp1252"), hint), path, hint)
        texts.extend(sentences)
        labels.extend([label] * len(sentences))
    return LabelledText(texts, labels, str(folder))


def read_sst2(split: str, data_dir=None) -> LabelledText:
    """SST-2's `train` (67,349) or `dev` (872) split from GLUE's TSV files."""
    if split not in SST2_FILES:
        raise DataError(f"SST-2 split {split!r} has no labels; choose one of {list(SST2_FILES)}")
    files = list(SST2_FILES.values())
    folder = _find_folder("sst2", files, data_dir)
    hint = _hint("sst2", files)
    path = _require(folder, "sst2", SST2_FILES[split], f"the {split} split", files)
    lines = decode_lines(path, ("utf-8",), hint)
    header = tuple(lines[0].split("\t")) if lines else ()
    if header != SST2_HEADER:
        raise DataError(
            f"{path}: line 1 is {lines[0] if lines else ''!r}, expected GLUE's header "
            f"'sentence<TAB>label'; is this SST-2's {split}.tsv? {hint}"
        )
    texts: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        sentence, tab, label = line.rpartition("\t")
        if not tab or label not in ("0", "1") or not sentence.strip():
            raise DataError(
                f"{path}: line {number} is {line[:80]!r}; expected '<sentence><TAB><0|1>'; {hint}"
            )
        texts.append(sentence.strip())
        labels.append(int(label))
    if not texts:
        raise DataError(f"{path}: holds a header and no sentence; {hint}")
    return LabelledText(texts, labels, str(path))


def read_multi30k(split: str, data_dir=None, source_lang="de", target_lang="en") -> ParallelText:
    """Multi30k task 1 sentence pairs of `split` (train, val, test_2016_flickr)."""
    if split not in MULTI30K_SPLITS:
        raise DataError(f"Multi30k split {split!r} is unknown; choose one of {MULTI30K_SPLITS}")
    if {source_lang, target_lang} != set(MULTI30K_LANGUAGES):
        raise DataError(
            f"Multi30k languages {source_lang!r} -> {target_lang!r}: this copy holds de and en"
        )
    files = [f"{s}.{lang}.gz" for s in MULTI30K_SPLITS for lang in MULTI30K_LANGUAGES]
    folder = _find_folder("multi30k", files, data_dir)
    hint = _hint("multi30k", files)
    paths = {
        lang: _require(folder, "multi30k", f"{split}.{lang}.gz", f"the {split} split", files)
        for lang in (source_lang, target_lang)
    }
    # Keep empty lines: line numbers carry the alignment.
    sides = {lang: decode_lines(path, ("utf-8",), hint) for lang, path in paths.items()}
    for lang in sides:  # a final newline is no extra sentence
        while sides[lang] and not sides[lang][-1]:
            sides[lang].pop()
    counts = {lang: len(lines) for lang, lines in sides.items()}
    if counts[source_lang] != counts[target_lang]:
        raise DataError(
            f"{paths[source_lang]} has {counts[source_lang]} lines but {paths[target_lang]} has "
            f"{counts[target_lang]}: the parallel files are misaligned (line i of one must "
            f"translate line i of the other); replace both with the original pair. {hint}"
        )
    pairs = []
    for number, (src, tgt) in enumerate(zip(*sides.values(), strict=True), start=1):
        if bool(src) != bool(tgt):
            empty = paths[source_lang] if not src else paths[target_lang]
            raise DataError(
                f"{empty}: line {number} is empty while its partner is not; the parallel "
                f"files are misaligned or damaged. {hint}"
            )
        if src:
            pairs.append((src, tgt))
    if not pairs:
        raise DataError(f"{paths[source_lang]}: holds no sentence (empty file?); {hint}")
    sources, targets = (list(side) for side in zip(*pairs, strict=True))
    return ParallelText(sources, targets, str(folder))
