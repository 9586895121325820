"""The text pipeline: corpus readers, vocabularies, padding, masks and length bucketing.

Numpy and Hugging Face `tokenizers` only, below both frameworks. `readers` parses
rt-polarity, SST-2 (GLUE TSV) and Multi30k de-en; `tokenize` learns, saves and reloads a
run's vocabulary; `batching` pads, masks and buckets; `sentiment` puts them together for
the sentiment project.
"""
