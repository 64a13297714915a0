"""A tiny BERT trained by Hugging Face's ``Trainer`` on scikit-learn's digits, watched by weightwatch.

    python examples/hf_tiny.py --epochs 15 --log-dir runs/hf_tiny
    tensorboard --logdir runs/hf_tiny

Each 8x8 image is read as a sequence of 65 tokens, a [CLS] token then its
pixel intensities (0..16), and classified by a one-layer BERT built from a
config with random weights: nothing is downloaded. It learns slowly (about
50% validation accuracy after 15 epochs); the point is watching it. The one weightwatch line is
``callbacks=[WeightWatchCallback()]``; TENSORBOARD_LOGGING_DIR sends
transformers' own TensorBoard logs and weightwatch's run to the same directory.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from weightwatch.integrations.hf import WeightWatchCallback


class DigitTokens(torch.utils.data.Dataset):
    """Digits as token sequences: input_ids (65,), [CLS] = 17 then the pixels in 0..16; labels () in 0..9."""

    CLS = 17

    def __init__(self, pixels: np.ndarray, labels: np.ndarray) -> None:
        ids = torch.tensor(pixels, dtype=torch.long)
        self.ids = torch.cat([torch.full((len(ids), 1), self.CLS), ids], dim=1)
        self.labels = torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_bert(hidden: int = 32, heads: int = 2) -> BertForSequenceClassification:
    config = BertConfig(vocab_size=18, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=65, num_labels=10,
                        initializer_range=0.2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config)


def accuracy(prediction) -> dict[str, float]:
    return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}


def train(log_dir: Path, epochs: int, train_size: int = 512, seed: int = 0, lr: float = 5e-3) -> Trainer:
    torch.manual_seed(seed)
    pixels, labels = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(pixels.astype(int), labels, train_size=train_size, test_size=256,
                                          random_state=seed, stratify=labels)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(log_dir / "run")
    args = TrainingArguments(
        output_dir=str(log_dir / "output"), num_train_epochs=epochs, per_device_train_batch_size=32,
        learning_rate=lr, eval_strategy="epoch", logging_strategy="epoch", save_strategy="no",
        report_to=["tensorboard"], use_cpu=True, disable_tqdm=True, seed=seed,
    )
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=DigitTokens(xtr, ytr),
                      eval_dataset=DigitTokens(xva, yva), compute_metrics=accuracy,
                      callbacks=[WeightWatchCallback()])
    trainer.train()
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("runs/hf_tiny"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    trainer = train(args.log_dir, args.epochs, train_size=args.train_size, seed=args.seed)
    final = [e for e in trainer.state.log_history if "eval_accuracy" in e][-1]
    print(f"eval_accuracy {final['eval_accuracy']:.3f} after {trainer.state.global_step} steps")
    print(f"watch it: tensorboard --logdir {args.log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
