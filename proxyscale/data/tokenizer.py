"""Tokenizers: UTF-8 bytes by default (no download, no training), or a local Hugging Face tokenizer.
Token ids are stored as uint16, so a vocabulary must fit in 65,535 ids."""

from __future__ import annotations

import numpy as np

from proxyscale.config import ConfigError

BYTE_EOS = 256
BYTE_VOCAB = 257


class Tokenizer:
    """UTF-8 bytes (no download, no training) or a local Hugging Face tokenizer."""

    def __init__(self, spec: str):
        self.spec = spec
        if spec == "byte":
            self.vocab_size, self.eos = BYTE_VOCAB, BYTE_EOS
            self._hf = None
        else:
            from transformers import AutoTokenizer

            try:
                self._hf = AutoTokenizer.from_pretrained(spec, local_files_only=True)
            except OSError as exc:
                raise ConfigError(f"tokenizer {spec!r}: not found locally ({str(exc).splitlines()[0][:160]})") from None
            self.vocab_size, self.eos = len(self._hf), self._hf.eos_token_id or 0
        if self.vocab_size > 65535:
            raise ConfigError(f"tokenizer {spec!r}: vocab {self.vocab_size} does not fit uint16 caches")

    def encode(self, text: str) -> np.ndarray:
        if self._hf is None:
            return np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8).astype(np.uint16)
        return np.asarray(self._hf.encode(text, add_special_tokens=False), dtype=np.uint16)
