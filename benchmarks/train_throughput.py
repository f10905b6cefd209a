"""Training throughput, JAX against the same AlexNet step in PyTorch, in one run.

  python -m benchmarks.train_throughput [--images=N] [--batch_size=B] [--image_size=128]

JAX rows: one full epoch loop of jaxtransfer's own compiled train step
(`training.make_train_step`): uint8 data on the device, batches gathered on
the device, flips + rotation + upsampling + normalisation inside the step;
freeze in {none, head, head+conv5} x compute dtype {float32, bfloat16}; the
compilation is excluded.

PyTorch rows: the same layer shapes (torchvision's AlexNet features, head
2304 -> 500 -> 10), Adam, cross-entropy, channels_last, the same on-device
pipeline (uint8 on the device, per-image flips and rotation with
affine_grid/grid_sample, bilinear upsampling, normalisation), frozen layers
with requires_grad=False. On a GPU also torch.compile and bf16 autocast. And,
as the common user baseline, a torchvision-style DataLoader whose workers
augment on the CPU.

Prints the device it ran on and a table of images/s with the JAX/PyTorch
ratio per row (JAX float32 full training against PyTorch channels_last).
Random pixels: throughput does not depend on the image content.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FREEZES = ("none", "head", "head+conv5")


# ---------------------------------------------------------------------------
# JAX: jaxtransfer's own step.

def jax_epoch(images, labels, *, freeze, dtype, batch_size, image_size):
  import jax
  from configs import default
  from jaxtransfer.core import distributed
  from jaxtransfer.engine import training

  config = default.get_config()
  config.freeze, config.compute_dtype = freeze, dtype
  config.image_size, config.batch_size = image_size, batch_size
  config.augment.hflip = config.augment.vflip = config.augment.rotate = True
  steps = len(labels) // batch_size
  setup, init_state = training.build_setup(config, 10, steps, batch_size, 1e-3)
  keys = training.RunKeys.from_seeds([0], setup.replicated)
  state = jax.jit(init_state, out_shardings=setup.replicated)(keys.init)
  data = distributed.put_replicated(images, setup.replicated)
  targets = distributed.put_replicated(labels, setup.replicated)
  order = jax.jit(lambda k: jax.vmap(
      lambda kk: training.epoch_order(kk, 0, len(labels), steps * batch_size))(k))(keys.data)
  step = jax.jit(training.make_train_step(setup), donate_argnums=0).lower(
      state, data, targets, order, keys.augment).compile()
  state = step(state, data, targets, order, keys.augment)  # warm-up
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps):
    state = step(state, data, targets, order, keys.augment)
  jax.block_until_ready(state)
  return steps * batch_size / (time.perf_counter() - start)


# ---------------------------------------------------------------------------
# PyTorch: the same network and step.

def torch_alexnet(num_classes=10, image_size=128):
  import torch
  from torch import nn
  from jaxtransfer import models
  features = nn.Sequential(
      nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
      nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
      nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
  head = nn.Sequential(nn.Flatten(), nn.Linear(models.feature_dim(image_size), 500),
                       nn.ReLU(inplace=True), nn.Linear(500, num_classes))
  return nn.Sequential(features, head)


def _freeze_torch(model, freeze):
  convs = [m for m in model[0] if m.__class__.__name__ == "Conv2d"]
  trainable_convs = {"none": convs, "head": [], "head+conv5": convs[-1:]}[freeze]
  for conv in convs:
    conv.requires_grad_(conv in trainable_convs)


def torch_augment(batch_uint8, image_size, generator):
  """The JAX step's pipeline on the device: scale, flip, rotate, upsample,
  normalise (NHWC uint8 in, NCHW float out)."""
  import torch
  import torch.nn.functional as F
  x = batch_uint8.permute(0, 3, 1, 2).float().div_(255.0)
  n, device = x.shape[0], x.device
  flip_h = torch.rand(n, device=device, generator=generator) < 0.5
  x = torch.where(flip_h[:, None, None, None], x.flip(3), x)
  flip_v = torch.rand(n, device=device, generator=generator) < 0.5
  x = torch.where(flip_v[:, None, None, None], x.flip(2), x)
  angle = (torch.rand(n, device=device, generator=generator) * 10 + 10) * (
      torch.randint(0, 2, (n,), device=device, generator=generator) * 2 - 1)
  theta = torch.deg2rad(angle)
  cos, sin = torch.cos(theta), torch.sin(theta)
  zero = torch.zeros_like(cos)
  affine = torch.stack([torch.stack([cos, -sin, zero], 1),
                        torch.stack([sin, cos, zero], 1)], 1)
  grid = F.affine_grid(affine, list(x.shape), align_corners=False)
  x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                    align_corners=False)
  x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                    align_corners=False)
  mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
  std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
  return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def torch_epoch(images, labels, *, freeze, batch_size, image_size, device,
                compile_model=False, bf16=False):
  import torch
  from torch import nn
  torch.manual_seed(0)
  model = torch_alexnet(image_size=image_size).to(device).to(
      memory_format=torch.channels_last)
  _freeze_torch(model, freeze)
  params = [p for p in model.parameters() if p.requires_grad]
  optimizer = torch.optim.Adam(params, lr=1e-3)
  loss_fn = nn.CrossEntropyLoss()
  data = torch.from_numpy(images).to(device)
  targets = torch.from_numpy(labels).long().to(device)
  generator = torch.Generator(device=device).manual_seed(0)
  forward = torch.compile(model) if compile_model else model
  steps = len(labels) // batch_size

  def step(i):
    index = torch.randint(0, len(targets), (batch_size,), device=device,
                          generator=generator)
    x = torch_augment(data[index], image_size, generator)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                        enabled=bf16):
      loss = loss_fn(forward(x), targets[index])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

  for i in range(3 if compile_model else 1):  # warm-up (and compilation)
    step(i)
  _sync(device)
  start = time.perf_counter()
  for i in range(steps):
    step(i)
  _sync(device)
  return steps * batch_size / (time.perf_counter() - start)


def _sync(device):
  import torch
  if device.type == "cuda":
    torch.cuda.synchronize()


class _CpuAugmentDataset:
  """torchvision-style: each worker augments one image at a time on the CPU."""

  def __init__(self, images, labels, image_size):
    self.images, self.labels, self.image_size = images, labels, image_size

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    import torch
    image = torch.from_numpy(self.images[i][None])
    x = torch_augment(image, self.image_size, None)[0]
    return x, int(self.labels[i])


def dataloader_epoch(images, labels, *, batch_size, image_size, device, workers):
  import torch
  from torch import nn
  torch.manual_seed(0)
  model = torch_alexnet(image_size=image_size).to(device).to(
      memory_format=torch.channels_last)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  loss_fn = nn.CrossEntropyLoss()
  loader = torch.utils.data.DataLoader(
      _CpuAugmentDataset(images, labels, image_size), batch_size=batch_size,
      shuffle=True, num_workers=workers, drop_last=True,
      pin_memory=device.type == "cuda", persistent_workers=workers > 0)

  def run(limit=None):
    count = 0
    for i, (x, y) in enumerate(loader):
      x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
      loss = loss_fn(model(x), y.to(device, non_blocking=True))
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
      count += len(y)
      if limit and i + 1 >= limit:
        break
    _sync(device)
    return count

  run(limit=1)  # start the workers
  start = time.perf_counter()
  count = run()
  return count / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=0,
                      help="images per epoch (default: 1,024 on CPU, 50,000 on GPU)")
  parser.add_argument("--batch_size", type=int, default=0,
                      help="default: 32 on CPU, 256 on GPU")
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--skip_torch", action="store_true")
  args = parser.parse_args()

  import jax
  import numpy as np

  on_gpu = jax.default_backend() == "gpu"
  images_count = args.images or (50_000 if on_gpu else 1024)
  batch_size = args.batch_size or (256 if on_gpu else 32)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (images_count, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, images_count).astype(np.int32)
  common = dict(batch_size=batch_size, image_size=args.image_size)

  rows = []  # (framework, variant, freeze, dtype, img/s)
  for freeze in FREEZES:
    for dtype in ("float32", "bfloat16"):
      rate = jax_epoch(images, labels, freeze=freeze, dtype=dtype, **common)
      rows.append(("JAX", "jaxtransfer step", freeze, dtype, rate))
      print(f"JAX {freeze} {dtype}: {rate:,.0f} img/s", flush=True)

  torch_rows = []
  if not args.skip_torch:
    import torch
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variants = [("channels_last", {}, "float32")]
    if device.type == "cuda":
      variants += [("torch.compile", {"compile_model": True}, "float32"),
                   ("bf16 autocast", {"bf16": True}, "bfloat16"),
                   ("torch.compile + bf16", {"compile_model": True, "bf16": True},
                    "bfloat16")]
    for name, options, dtype in variants:
      for freeze in FREEZES:
        rate = torch_epoch(images, labels, freeze=freeze, device=device,
                           **options, **common)
        torch_rows.append(("PyTorch", name, freeze, dtype, rate))
        print(f"PyTorch {name} {freeze}: {rate:,.0f} img/s", flush=True)
    workers = min(8, os.cpu_count() or 1)
    rate = dataloader_epoch(images, labels, device=device, workers=workers, **common)
    torch_rows.append(("PyTorch", f"DataLoader, CPU augmentation ({workers} workers)",
                       "none", "float32", rate))
    print(f"PyTorch DataLoader: {rate:,.0f} img/s", flush=True)

  jax_rate = {(r[2], r[3]): r[4] for r in rows}
  device_name = jax.devices()[0].device_kind
  print(f"\n{datetime.date.today()} | {platform.node()} | {device_name} "
        f"x{jax.device_count()} ({jax.default_backend()}) | {os.cpu_count()} CPU "
        f"cores | jax {jax.__version__}" + (
            "" if args.skip_torch else f" | torch {__import__('torch').__version__}")
        + f" | {args.image_size} px | batch {batch_size} | {images_count} "
        "images per epoch, flips + rotation on")
  print("| framework | variant | freeze | dtype | img/s | JAX / this |")
  print("|---|---|---|---|---|---|")
  for framework, variant, freeze, dtype, rate in rows + torch_rows:
    ours = jax_rate.get((freeze, dtype))
    ratio = "-" if framework == "JAX" or ours is None else f"{ours / rate:.2f}x"
    print(f"| {framework} | {variant} | {freeze} | {dtype} | {rate:,.0f} | {ratio} |")


if __name__ == "__main__":
  main()
