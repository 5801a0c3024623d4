"""Tiny random-init BERT checkpoints for tests (2 layers, hidden 32), saved with the packaged
MiniLM tokenizer so they load through the same ``from_pretrained`` path as any real model."""

from __future__ import annotations

import os

import torch
from transformers import BertConfig, BertModel

from trainables.models import load_tokenizer, packaged_minilm_path


def make_tiny_bert(path: str, layers: int = 2, hidden: int = 32, seed: int = 0) -> str:
    """Save a random-init BERT backbone (no task head) plus tokenizer at ``path``."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(packaged_minilm_path())
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
