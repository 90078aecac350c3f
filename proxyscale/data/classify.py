"""Classifier selection (the `classifier_filter` curation step): a fast text classifier trained on positive examples
against the pool, keeping the pool's top fraction by its score (Brown et al. 2020's quality classifier; DCLM's
fastText filter).

The classifier is scikit-learn's hashed word n-grams (HashingVectorizer, unigrams and bigrams, 2^18 features) and
logistic regression: the official fastText package has no wheel for this Python and builds from source only, so
the step uses the maintained library proxyscale already depends on for datamodels. Positives are the training side
of a built-in corpus (`positives: python_docs`) or a local file (`positives: path/to/file`, .txt: one example per
line, .jsonl: a `text` field per line); negatives are an equal-sized seeded sample of the pool itself.

What the classifier is enters the step's cache key, the recipe's and the run id (`classifier_identity`): the sha256
of the positives' text, the step's settings and scikit-learn's version; with the pool (already in the key) they
determine the fitted model, so a changed positive file or library never serves a stale selection.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from proxyscale.config import ConfigError
from proxyscale.data.sources import BUILTIN, Document, corpus_file

N_FEATURES = 1 << 18
INSTALL_HINT = "classifier_filter needs scikit-learn: pip install 'proxyscale[attribution]'"


def positive_texts(positives: str, cache_dir: str | None = None) -> list[str]:
    """The positive examples: a built-in corpus's training side (read from cache_dir's corpora when given) or a
    local .txt/.jsonl file (ConfigError otherwise)."""
    if positives in BUILTIN:
        from proxyscale.config import SourceConfig
        from proxyscale.data.sources import load_documents

        return [d.text for d in load_documents(SourceConfig(name=positives, path=positives), "train", cache_dir)]
    path = Path(os.path.expanduser(str(positives)))
    if not path.is_file():
        raise ConfigError(f"classifier_filter: positives {positives!r} is neither a built-in corpus ({', '.join(BUILTIN)}) nor a file")
    texts = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                texts.append(str(json.loads(line)["text"]))
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"classifier_filter: {path} line {i + 1} is not a JSON object with a text field") from None
        else:
            texts.append(line)
    if len(texts) < 2:
        raise ConfigError(f"classifier_filter: {path} holds {len(texts)} positive example(s); at least 2 are needed")
    return texts


def classifier_identity(positives: str = "???", keep_frac: float = 0.5, c: float = 1.0, cache_dir: str | None = None, **_) -> dict:
    """The classifier's identity: the positives' sha256, the settings, the library version."""
    try:
        import sklearn
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    if positives in BUILTIN:  # (from the extracted corpus where there is one; composing a cell writes no cache)
        digest = _builtin_sha256(positives, cache_dir if cache_dir and corpus_file(positives, cache_dir).exists() else None)
    else:
        digest = _sha256(positive_texts(positives))
    return {"positives_sha256": digest, "n_features": N_FEATURES, "c": float(c), "sklearn": sklearn.__version__}


def _sha256(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8", "replace")).digest())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _builtin_sha256(positives: str, cache_dir: str | None) -> str:
    """A built-in corpus's positives are fixed for the process (its fingerprint): hashed once, not per composed cell."""
    return _sha256(positive_texts(positives, cache_dir))


def scores(docs: list[Document], positives: list[str], rng, c: float = 1.0) -> np.ndarray:
    """Each document's log-odds of being a positive under a classifier fitted on positives vs a pool sample."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = HashingVectorizer(n_features=N_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm="l2")
    negatives = [docs[i].text for i in sorted(rng.sample(range(len(docs)), min(len(docs), len(positives))))]
    x = vec.transform(positives + negatives)
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    model = LogisticRegression(C=c, max_iter=1000).fit(x, y)
    return model.decision_function(vec.transform([d.text for d in docs]))


def classifier_filter(
    docs: list[Document], rng, positives: str = "???", keep_frac: float = 0.5, c: float = 1.0, inputs: dict | None = None, cache_dir: str | None = None
) -> list[Document]:
    """Keep round(keep_frac x N) documents (at least one) with the highest classifier scores, in their input order."""
    if not 0 < float(keep_frac) <= 1:
        raise ConfigError(f"classifier_filter: keep_frac must be in (0, 1], got {keep_frac!r}")
    s = scores(docs, positive_texts(positives, cache_dir), rng, c)
    k = min(len(docs), max(1, int(round(float(keep_frac) * len(docs)))))
    kept = set(np.argsort(-s, kind="stable")[:k].tolist())
    return [d for i, d in enumerate(docs) if i in kept]
