"""Seed 002's v4 joint recipe written independently in PyTorch, to check that
jaxtransfer's run of it learns as a plain PyTorch script would.

Not a speed benchmark: an accuracy cross-check. It reads the same TFDS
CIFAR-10 copy, keeps the same class-balanced subset as `config.train_subset`
(the first N/10 examples of each class in the split's order), and trains
the v4 model (dropout 0.3 after the classifier's first two convs, the
mirrored resize + conv decoder) with loss = CE + MSE(reconstruction,
normalised input) + gamma * sum_p ||p||_2 (l2_form='norm'), SGD lr 0.01,
momentum 0.9, weight decay 1e-4, x0.1 every 10 epochs, ImageNet
normalisation, random horizontal flips. It prints one JSON line per epoch
(val accuracy on the whole test split, mean train loss), to put beside
the jaxtransfer run's metrics.jsonl:

  python -m benchmarks.v4_torch_reference --train_subset=10000 --epochs=15 --batch_size=32
  python -m jaxtransfer.main --config=configs/joint/v4.py:arms=dropout_l2norm,num_seeds=1 \
      --config.train_subset=10000 --config.num_epochs=15 --config.batch_size=32 --workdir=...

Needs torch (the `convert` extra) and TFDS_DATA_DIR pointing at the copy.
"""

import argparse
import json
import time

import numpy as np
import tensorflow_datasets as tfds
import torch
from torch import nn
import torch.nn.functional as F

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load(split: str, subset: int, classes: int = 10):
  source = tfds.data_source("cifar10", split=split)
  labels = np.array([source[i]["label"] for i in range(len(source))])
  indices = np.arange(len(labels))
  if subset:
    indices = np.sort(np.concatenate(
        [np.flatnonzero(labels == c)[:subset // classes]
         for c in range(classes)]))
  images = np.stack([source[int(i)]["image"] for i in indices])
  x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
  return (x - MEAN) / STD, torch.from_numpy(labels[indices]).long()


class V4(nn.Module):
  """Encoder C'(32)>C(32); classifier C'(32)>D(.3)>C(64)>D(.3)>C(64)>
  L(512)>L(128)>L'(10); decoder: encoder mirrored (2x bilinear + conv)."""

  def __init__(self, classes: int = 10):
    super().__init__()
    self.e1, self.e2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1)
    self.c1 = nn.Conv2d(32, 32, 3, padding=1)
    self.c2 = nn.Conv2d(32, 64, 3, padding=1)
    self.c3 = nn.Conv2d(64, 64, 3, padding=1)
    self.f1, self.f2 = nn.Linear(1024, 512), nn.Linear(512, 128)
    self.f3 = nn.Linear(128, classes)
    self.d1 = nn.Conv2d(32, 32, 3, padding=1)
    self.d2 = nn.Conv2d(32, 3, 3, padding=1)
    self.drop = nn.Dropout(0.3)

  def forward(self, x):
    z = F.max_pool2d(F.relu(self.e2(F.relu(self.e1(x)))), 2)
    h = self.drop(F.relu(self.c1(z)))
    h = self.drop(F.max_pool2d(F.relu(self.c2(h)), 2))
    h = F.max_pool2d(F.relu(self.c3(h)), 2)
    # NHWC flatten order does not matter to an independently initialised fc.
    h = F.relu(self.f2(F.relu(self.f1(h.flatten(1)))))
    r = F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=False)
    r = self.d2(F.relu(self.d1(r)))
    return self.f3(h), r


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--train_subset", type=int, default=10000)
  parser.add_argument("--epochs", type=int, default=15)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--gamma", type=float, default=0.001)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--threads", type=int, default=0)
  args = parser.parse_args()
  torch.manual_seed(args.seed)
  if args.threads:
    torch.set_num_threads(args.threads)
  x_train, y_train = load("train", args.train_subset)
  x_val, y_val = load("test", 0)
  model = V4()
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                              weight_decay=1e-4)
  schedule = torch.optim.lr_scheduler.StepLR(optimizer, 10, 0.1)
  for epoch in range(1, args.epochs + 1):
    start, model_losses = time.time(), []
    model.train()
    order = torch.randperm(len(x_train))
    for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
      batch = order[i:i + args.batch_size]
      x, y = x_train[batch], y_train[batch]
      flip = torch.rand(len(x)) < 0.5
      x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
      logits, reconstruction = model(x)
      loss = (F.cross_entropy(logits, y) + F.mse_loss(reconstruction, x)
              + args.gamma * sum(torch.norm(p) for p in model.parameters()))
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      model_losses.append(loss.item())
    schedule.step()
    model.eval()
    correct = 0
    with torch.no_grad():
      for i in range(0, len(x_val), 1000):
        logits, _ = model(x_val[i:i + 1000])
        correct += (logits.argmax(1) == y_val[i:i + 1000]).sum().item()
    print(json.dumps({"epoch": epoch, "val_accuracy": correct / len(x_val),
                      "train_loss": float(np.mean(model_losses)),
                      "seconds": round(time.time() - start, 1)}), flush=True)


if __name__ == "__main__":
  main()
