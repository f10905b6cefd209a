"""Seed 002's standard architectures: VGG16 and ResNet50 as encoder and
classifier, each with the seed's 5-layer transposed-conv decoder
(jaxtransfer/models/zoo_joint.py), at 224 px (CIFAR-10's 32 px resized on
the device), the seed's recipe (common.py), from converted ImageNet weights
(the decoder is always new):

  arm           vgg16   resnet50
  beta1         93.58   96.65   encoder + decoder + classifier, end to end
  beta0         93.49   96.46   beta = 0 (the decoder still built)
  separate      93.99   96.79   E2E=False: the autoencoder alone, then the
                                classifier from its encoder (as v4.py)
  no_decoder    93.61   96.69   task='classifier'

  jaxtransfer convert --arch=vgg16 --with_classifier --torch_checkpoint=vgg16-397923af.pth --out=weights/vgg16_imagenet
  python -m jaxtransfer.main --config=configs/joint/zoo.py:model=vgg16,weights=weights/vgg16_imagenet --workdir=workdirs/joint_vgg16
  python -m jaxtransfer.main --config=configs/joint/zoo.py:smoke,model=resnet50 --workdir=/tmp/jt/joint_resnet50

The seed does not say whether its VGG16 and ResNet50 started from ImageNet
weights; its text credits their accuracy partly to "pre knowledge about the
world ... trained on ImageNet", so init='imagenet' is the default here and
init=random the alternative. torchvision's VGG classifier (fc6, fc7 from
the file, fc8 new for 10 classes) and ResNet's fc (new) are the
classifiers. At 224 px a training step of VGG16 is ~90 GFLOP per image,
about half a day per CIFAR-10 epoch on a 2-core CPU: the full arms are for a
GPU; the smoke runs at 32 px.

Arguments:
  model=vgg16|resnet50
  weights=DIR     `jaxtransfer convert --arch=MODEL --with_classifier` output
                  (required unless init=random)
  init=imagenet|random
  image_size=224  a multiple of 32
  arms=a+b        only those arms
  smoke           32 px, random init, 256 images, 1 epoch, 1 seed
"""

from configs.joint import common
from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError

SEED = {"vgg16": {"beta1": 93.58, "beta0": 93.49, "separate": 93.99,
                  "no_decoder": 93.61},
        "resnet50": {"beta1": 96.65, "beta0": 96.46, "separate": 96.79,
                     "no_decoder": 96.69}}
ARMS = {
    "beta1": {},
    "beta0": {"joint.beta": 0.0},
    "separate": {"stages": (
        {"name": "autoencoder", "joint.alpha": 0.0, "joint.beta": 1.0},
        {"name": "classifier", "joint.alpha": 1.0, "joint.beta": 0.0})},
    "no_decoder": {"task": "classifier"},
}
DECODER = {"vgg16": "C(512)>C(256)>C(128)>C(64)>C(3)",
           "resnet50": "C(1024)>C(512)>C(256)>C(64)>C(3)"}


def get_config(arg=None):
  config, arg = common.seed002_config(
      arg, model="vgg16", weights="", init="imagenet", image_size=224,
      arms="+".join(ARMS))
  if arg.model not in SEED:
    raise UserError(f"config argument model={arg.model!r}: seed 002's "
                    f"decoders are for {' and '.join(SEED)}")
  config.model = arg.model
  config.image_size = arg.image_size
  # smoke trains from random weights (no converted ImageNet weights are
  # needed) unless init= is given
  config.init = (configlib.preset(arg, "init", "random") if arg.smoke
                 else arg.init)
  config.init_weights = arg.weights if config.init == "imagenet" else ""
  config.eval_batch_size = 100
  if arg.smoke:
    config.image_size = configlib.preset(arg, "image_size", 32)
    config.train_subset, config.val_subset = 256, 100
    config.num_epochs, config.batch_size = 1, 32
    config.log_every_steps = 4
  arms = []
  for name in arg.arms.split("+"):
    if name not in ARMS:
      raise UserError(f"config argument arms: {name!r} is not one of "
                      f"{', '.join(ARMS)}")
    arms.append({"name": name, **ARMS[name], "notes": {
        "encoder": arg.model, "classifier": arg.model,
        "decoder": DECODER[arg.model],
        "seed_accuracy": f"{SEED[arg.model][name]:.2f}"}})
  return common.as_study(config, arms)
