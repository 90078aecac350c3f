"""Benchmark tasks with continuous metrics: multiple-choice and cloze eval sets (issue 16.4).

An eval set with `task: mc` holds items {context, choices: [...], label: int} (HellaSwag-, ARC-style); one with
`task: cloze` holds items {context, target} (LAMBADA-style; SQuAD/TriviaQA as short answers). Every continuation
(a choice, or the target) is scored by the model given its context:

  ll     = the summed log-likelihood (nats) of the continuation's tokens given the context,
  n      = the continuation's token count,
  greedy = whether greedy decoding reproduces every continuation token.

Per item (all higher is better). The mc accuracies follow lm-evaluation-harness's multiple_choice output type, so a
number here sits beside the field's: `acc` ranks the choices by raw summed log-likelihood, `acc_norm` by the summed
log-likelihood divided by the choice's length in characters (the choice text as given, without the delimiter);
`acc_per_token` (proxyscale's acc before issue 23) divides by the continuation's token count instead.
  acc          mc: argmax over choices of ll is the label; cloze: greedy (all three accuracies: one continuation).
  acc_norm     mc: argmax over choices of ll / len(choice in characters) is the label; cloze: greedy.
  acc_per_token mc: argmax over choices of ll / n (per-token length-normalised) is the label; cloze: greedy.
  prob_correct mc: softmax over the choices of the summed ll, at the label (DataDecide's "correct prob": the
               probability mass of the correct answer among the choices); cloze: exp(ll), the probability of
               the whole target continuation.
  ll_norm      the correct continuation's ll / n: its mean log-likelihood per token (nats/token, <= 0).
An eval set's metric is the mean over its items. Everything here is numpy; the model's part (log-softmax and
gather over the continuation positions) is `proxyscale.job.module.continuation_scores`.

Sequences: [EOS] + context + delimiter + continuation, the context cut from the left so the whole fits seq_len + 1
tokens (a continuation longer than seq_len keeps its first seq_len tokens). EOS first marks the start of a
document, as between the training documents.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

TASKS = ("lm", "mc", "cloze")
METRICS = ("acc", "acc_norm", "acc_per_token", "prob_correct", "ll_norm")  # task metrics, all higher-is-better
HIGHER_IS_BETTER = {"loss": False, **dict.fromkeys(METRICS, True)}
METRICS_VERSION = 2  # 2: acc is the harness's (raw ll), acc_norm and acc_per_token beside it; enters mc cells' run ids


class TaskError(ValueError):
    """An item that cannot be scored; the message is one line naming the set, file and item."""


@dataclass(frozen=True)
class Item:
    context: str
    choices: tuple[str, ...]  # cloze: the one target
    label: int = 0


def _field(row: dict, path: str) -> Any:
    """row[path], with dotted paths into nested dicts and lists (answers.text.0); KeyError when absent."""
    cur: Any = row
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise KeyError(path)
    return cur


def item_from_row(row: dict, spec, where: str) -> Item:
    """One item from a dataset row under the eval set's field map (`spec`: a SourceConfig), its text checked (so a
    bad item stops the planner, not every rerun of the cell); TaskError names `where`."""
    return _check_text(_item_from_row(row, spec, where), where)


def _item_from_row(row: dict, spec, where: str) -> Item:
    if not isinstance(row, dict):
        raise TaskError(f"{where} is a {type(row).__name__}, not an object")
    fields = ", ".join(map(str, row)) or "none"
    if spec.context_template:
        try:
            context = str(spec.context_template).format(**row)
        except (KeyError, IndexError) as exc:
            raise TaskError(f"{where}: context_template names a field the row lacks ({exc}; fields: {fields})") from None
    elif getattr(spec, "preprocess", None) == "hellaswag":
        context = ""  # built from activity_label, ctx_a and ctx_b by hellaswag_item
    else:
        try:
            context = _field(row, spec.context_field)
        except KeyError:
            raise TaskError(f"{where} has no context field {spec.context_field!r} (fields: {fields})") from None
    if not isinstance(context, str):
        raise TaskError(f"{where}: context is a {type(context).__name__}, not text")
    if spec.task == "mc":
        try:
            choices = _field(row, spec.choices_field)
        except KeyError:
            raise TaskError(f"{where} has no choices field {spec.choices_field!r} (fields: {fields})") from None
        if not isinstance(choices, (list, tuple)) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise TaskError(f"{where}: choices must be a list of at least 2 non-empty strings, got {str(choices)[:60]!r}")
        try:
            label = _field(row, spec.label_field)
        except KeyError:
            raise TaskError(f"{where} has no label field {spec.label_field!r} (fields: {fields})") from None
        if isinstance(label, str) and label.strip().isdigit():  # HellaSwag's labels are strings
            label = int(label)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise TaskError(f"{where}: label must be a 0-based choice index, got {label!r}")
        if not 0 <= int(label) < len(choices):
            raise TaskError(f"{where}: label {int(label)} is out of range for {len(choices)} choices")
        if getattr(spec, "preprocess", None) == "hellaswag":
            return hellaswag_item(row, choices, int(label), where)
        return Item(context.rstrip(), tuple(choices), int(label))
    if spec.task == "cloze":
        if spec.cloze_last_word:
            head, _, last = context.rstrip().rpartition(" ")
            if not head.strip() or not last:
                raise TaskError(f"{where}: cloze_last_word needs a context of at least two words")
            return Item(head.rstrip(), (last,), 0)
        try:
            target = _field(row, spec.target_field)
        except KeyError:
            raise TaskError(f"{where} has no target field {spec.target_field!r} (fields: {fields})") from None
        if not isinstance(target, str) or not target.strip():
            raise TaskError(f"{where}: target must be non-empty text, got {str(target)[:60]!r}")
        return Item(context.rstrip(), (target.strip(),), 0)
    raise TaskError(f"{where}: task must be lm, mc or cloze, got {spec.task!r}")


def hellaswag_text(text: str) -> str:
    """HellaSwag's cleanup as lm-evaluation-harness does it: strip, WikiHow's " [title]" to ". ", other bracketed
    tags dropped, double spaces made single."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag_item(row: dict, endings, label: int, where: str) -> Item:
    """A HellaSwag row as the harness builds it: context = cleanup(activity_label + ": " + ctx_a + " " +
    ctx_b.capitalize()), choices = cleanup(each ending)."""
    try:
        context = f"{row['activity_label']}: {row['ctx_a']} {str(row['ctx_b']).capitalize()}"
    except KeyError as exc:
        raise TaskError(f"{where}: preprocess hellaswag needs the fields activity_label, ctx_a and ctx_b (missing {exc})") from None
    return Item(hellaswag_text(context), tuple(hellaswag_text(e) for e in endings), label)


def _check_text(item: Item, where: str) -> Item:
    """Text a tokenizer can encode: JSON's \\ud800 escapes decode to lone surrogates, which no UTF-8 encoder takes."""
    for text in (item.context, *item.choices):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = text[exc.start : exc.end].encode("unicode_escape").decode()
            raise TaskError(f"{where}: holds a lone surrogate {bad} (half of a UTF-16 pair), not text; fix or drop the item") from None
    return item


@dataclass
class TaskTokens:
    """An eval set's items as token sequences: one per (item, continuation)."""

    task: str
    seqs: list[np.ndarray]  # int64, [EOS] + context + continuation, at most seq_len + 1 tokens
    item: np.ndarray  # (N,) the item of each sequence
    choice: np.ndarray  # (N,) the choice index of each sequence
    start: np.ndarray  # (N,) the first continuation token's index in the targets (seq[1:])
    length: np.ndarray  # (N,) the continuation's token count
    labels: np.ndarray  # (items,)
    n_choices: np.ndarray  # (items,)
    chars: np.ndarray  # (N,) the continuation's length in characters (without the delimiter): acc_norm's divisor
    contexts: list[str]  # per item, for the report's snippets

    @property
    def n_items(self) -> int:
        return len(self.labels)

    def key(self) -> str:
        """A content hash of the tokenized set (its examples are the same items exactly when this is the same)."""
        h = hashlib.sha256(self.task.encode())
        for a in (self.item, self.choice, self.start, self.length, self.labels):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        for s in self.seqs:
            h.update(np.ascontiguousarray(s, dtype=np.int64).tobytes())
        return h.hexdigest()[:20]

    def item_rows(self, i: int) -> list[int]:
        return self._rows[i]

    def __post_init__(self):
        rows: list[list[int]] = [[] for _ in range(len(self.labels))]
        for r, it in enumerate(self.item):
            rows[int(it)].append(r)
        self._rows = rows


def tokenize(items: list[Item], task: str, encode, eos: int, seq_len: int, delimiter: str = " ") -> TaskTokens:
    """Items -> sequences: [eos] + context, then delimiter + continuation, the context cut from the left to fit
    seq_len + 1 tokens; a continuation longer than seq_len keeps its first seq_len tokens."""
    seqs, item, choice, start, length = [], [], [], [], []
    for i, it in enumerate(items):
        ctx = np.concatenate([[eos], np.asarray(encode(it.context), dtype=np.int64)]).astype(np.int64)
        for c, cont_text in enumerate(it.choices):
            cont = np.asarray(encode(delimiter + cont_text), dtype=np.int64)[:seq_len]
            keep = seq_len + 1 - len(cont)
            head = ctx[-keep:]
            seqs.append(np.concatenate([head, cont]))
            item.append(i)
            choice.append(c)
            start.append(len(head) - 1)
            length.append(len(cont))
    return TaskTokens(
        task,
        seqs,
        np.array(item, dtype=np.int64),
        np.array(choice, dtype=np.int64),
        np.array(start, dtype=np.int64),
        np.array(length, dtype=np.int64),
        np.array([it.label for it in items], dtype=np.int64),
        np.array([len(it.choices) for it in items], dtype=np.int64),
        np.array([len(c) for it in items for c in it.choices], dtype=np.int64),
        [it.context for it in items],
    )


def score_items(
    task: str,
    ll: np.ndarray,
    n_tok: np.ndarray,
    greedy: np.ndarray,
    item: np.ndarray,
    choice: np.ndarray,
    labels: np.ndarray,
    n_choices: np.ndarray,
    n_chars: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-item METRICS (see the module doc) from per-continuation ll (summed nats), token counts, greedy flags and
    character lengths (None: acc_norm is NaN). An item some of whose continuations were not scored gets NaN."""
    n_items = len(labels)
    width = int(n_choices.max()) if n_items else 0
    LL = np.full((n_items, width), np.nan)
    N = np.ones((n_items, width))
    G = np.zeros((n_items, width), dtype=bool)
    C = np.ones((n_items, width))
    LL[item, choice], N[item, choice], G[item, choice] = ll, np.maximum(n_tok, 1), greedy
    if n_chars is not None:
        C[item, choice] = np.maximum(n_chars, 1)
    valid = np.arange(width)[None, :] < n_choices[:, None]
    seen = np.where(valid, np.isfinite(LL), True).all(axis=1)
    rows = np.arange(n_items)
    ll_c, n_c = LL[rows, labels], N[rows, labels]
    ll_norm = ll_c / n_c
    if task == "cloze":
        acc = acc_norm = acc_per_token = G[rows, labels].astype(float)
        prob = np.exp(ll_c)
    else:
        ok = valid & np.isfinite(LL)

        def pick(score):  # ties: the first choice, as numpy's argmax (the harness's too)
            return (np.argmax(np.where(ok, score, -np.inf), axis=1) == labels).astype(float)

        acc, acc_per_token = pick(LL), pick(LL / N)
        acc_norm = pick(LL / C) if n_chars is not None else np.full(n_items, np.nan)
        z = np.where(ok, LL, -np.inf)
        zmax = z.max(axis=1, keepdims=True) if width else z
        with np.errstate(invalid="ignore", over="ignore"):
            e = np.where(ok, np.exp(z - zmax), 0.0)
            prob = e[rows, labels] / e.sum(axis=1)
    out = {"acc": acc, "acc_norm": acc_norm, "acc_per_token": acc_per_token, "prob_correct": prob, "ll_norm": ll_norm}
    return {k: np.where(seen, v, np.nan) for k, v in out.items()}


def aggregate(per_item: dict[str, np.ndarray]) -> dict[str, float]:
    """An eval set's metrics: the mean over its scored items (NaN when none was)."""
    out = {}
    for k in METRICS:
        v = np.asarray(per_item.get(k, []), dtype=float)
        v = v[np.isfinite(v)]
        out[k] = float(v.mean()) if len(v) else float("nan")
    return out
