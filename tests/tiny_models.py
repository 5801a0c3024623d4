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


_CORPUS = ("the film is a charming and often affecting journey", "a gorgeous , witty , seductive movie",
           "it 's a bad sign when you 're rooting for the film to end", "unflinchingly bleak and desperate",
           "the acting , costumes , music , cinematography and sound are all astounding")


def make_bpe_tokenizer(path: str):
    """A tiny byte-level BPE tokenizer (RoBERTa's kind: ``<s> </s> <pad> <mask>``, no segment ids),
    trained offline on a few sentences; any text encodes (unknown words fall back to bytes)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast  # transformers 5: RobertaTokenizer is this class

    os.makedirs(path, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(_CORPUS) * 4, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    vocab_file, merges_file = bpe.save_model(path)
    return RobertaTokenizerFast(vocab=vocab_file, merges=merges_file)


def make_permuted_bert_tokenizer(path: str, seed: int = 0):
    """The MiniLM (BERT uncased) WordPiece vocabulary with its ordinary words shuffled: the same
    size and tokens, other ids."""
    from transformers import BertTokenizerFast

    base = load_tokenizer(packaged_minilm_path())
    vocab = [t for t, _ in sorted(base.get_vocab().items(), key=lambda kv: kv[1])]
    head, words = vocab[:1000], vocab[1000:]  # [PAD], [unusedN], [CLS], [SEP], [MASK] ... stay
    order = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)).tolist()
    os.makedirs(path, exist_ok=True)
    vocab_file = os.path.join(path, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as fh:
        fh.write("\n".join(head + [words[i] for i in order]) + "\n")
    return BertTokenizerFast(vocab=vocab_file, do_lower_case=True)


ARCHITECTURES = ("bert", "distilbert", "roberta", "electra")


def make_tiny_encoder(path: str, arch: str, layers: int = 2, hidden: int = 32, seed: int = 0,
                      tokenizer=None) -> str:
    """A random-init backbone of ``arch`` (no task head) plus a tokenizer at ``path``: the MiniLM
    BERT tokenizer for BERT, DistilBERT and ELECTRA (as their real checkpoints use WordPiece),
    a tiny byte-level BPE one for RoBERTa, or ``tokenizer``."""
    from transformers import (
        DistilBertConfig,
        DistilBertModel,
        ElectraConfig,
        ElectraModel,
        RobertaConfig,
        RobertaModel,
    )

    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    if arch == "bert" and tokenizer is None:
        return make_tiny_bert(path, layers=layers, hidden=hidden, seed=seed)
    torch.manual_seed(seed)
    if tokenizer is None:
        tokenizer = (make_bpe_tokenizer(os.path.join(path, "bpe")) if arch == "roberta"
                     else load_tokenizer(packaged_minilm_path()))
    common = dict(vocab_size=len(tokenizer), num_attention_heads=2, max_position_embeddings=128)
    if arch == "bert":
        model = BertModel(BertConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=2 * hidden,
                                     **common))
    elif arch == "distilbert":
        model = DistilBertModel(DistilBertConfig(dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden,
                                                 vocab_size=len(tokenizer), max_position_embeddings=128))
    elif arch == "roberta":  # position ids start at padding_idx + 1: 128 covers max_seq_length <= 126
        model = RobertaModel(RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, intermediate_size=2 * hidden,
                                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                           eos_token_id=tokenizer.eos_token_id, type_vocab_size=1, **common))
    elif arch == "electra":  # embedding_size < hidden_size: the embeddings_project layer is exercised
        model = ElectraModel(ElectraConfig(hidden_size=hidden, embedding_size=hidden // 2, num_hidden_layers=layers,
                                           intermediate_size=2 * hidden, **common))
    else:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
