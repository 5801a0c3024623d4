"""Noise injection (seed-002 extension): each non-special, non-padding token of a training batch
is replaced, with probability ``noise_prob``, by a noise token: ``[MASK]``, ``[UNK]`` or a random
vocabulary word. The engine applies it to the batch both teacher and student then see."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when noise is injected (the option declarations stay light)
    import torch

from trainables.errors import UserError

NOISE_TOKENS = ("mask", "unk", "random")


class NoiseInjector:
    def __init__(self, tokenizer, prob: float, token: str = "mask", seed: int = 0):
        import torch

        if token not in NOISE_TOKENS:
            raise UserError(f"unknown noise_token {token!r}; valid: {', '.join(NOISE_TOKENS)}")
        self.prob, self.token = prob, token
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        ids = {"mask": tokenizer.mask_token_id, "unk": tokenizer.unk_token_id}
        if token != "random" and ids[token] is None:
            raise UserError(f"noise_token={token!r} but the tokenizer has no such token; use 'random'")
        self.replacement = ids.get(token)
        vocab = torch.arange(len(tokenizer))
        self.vocab = vocab[~torch.isin(vocab, self.special)]  # random words exclude special tokens
        self.generator = torch.Generator().manual_seed(seed)

    def eligible(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        ids = batch["input_ids"]
        mask = ~torch.isin(ids, self.special.to(ids.device))
        if "attention_mask" in batch:
            mask &= batch["attention_mask"].bool()
        return mask

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        import torch

        ids = batch["input_ids"]
        draw = torch.rand(ids.shape, generator=self.generator).to(ids.device)
        replace = self.eligible(batch) & (draw < self.prob)
        if self.token == "random":
            pick = torch.randint(len(self.vocab), ids.shape, generator=self.generator)
            noise = self.vocab[pick].to(ids.device)
        else:
            noise = torch.full_like(ids, self.replacement)
        return {**batch, "input_ids": torch.where(replace, noise, ids)}
