"""The shared base config: every field jaxtransfer reads, with its default.

Every other file in `configs/` starts from `get_config()` here and overrides a
few fields. The returned ConfigDict is locked: setting a field that does not
exist (a typo in a config file, or `--config.lerning_rate=...` on the command
line) is an error that names the nearest known fields.

Arguments (`--config=configs/default.py:smoke`):
  smoke: shrink the run (64 px, a 2,560-image class-balanced subset, a few
    epochs) so the whole pipeline finishes in a couple of minutes on 2 CPU cores.

Run it (a randomly initialised AlexNet classifier, all layers trained):
  python -m jaxtransfer.main --config=configs/default.py --workdir=/tmp/jt/default
"""

import ml_collections

from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False)
  config = ml_collections.ConfigDict()

  # What to train: 'classifier' (AlexNet body + 2304->500->10 head) or
  # 'autoencoder' (AlexNet body as encoder + a decoder, MSE reconstruction).
  config.task = "classifier"
  # task='joint' (seed 002): a classifier and a decoder on one encoder,
  # loss = alpha * cross-entropy + beta * reconstruction MSE (model
  # 'notation'); seed 002's gamma (L2 on the weights) is kernel_l2 and
  # bias_l2 below. beta=0 still builds (and reports) the decoder; task=
  # 'classifier' with the same model is the seed's "no decoder" arm.
  config.joint = ml_collections.ConfigDict()
  config.joint.alpha = 1.0
  config.joint.beta = 1.0
  # + delta * jigsaw: the image cut into jigsaw_grid x jigsaw_grid tiles,
  # shuffled per image; the decoder reconstructs the original from the
  # encoder's features of the jumbled image (the seed gives no grid size).
  config.joint.delta = 0.0
  config.joint.jigsaw_grid = 2
  config.seed = 0  # model init, data order and augmentation all derive from it
  # Models trained side by side in one compiled program (jax.vmap over a seed
  # axis): seeds seed, seed+1, ..., each with its own init, data order and
  # augmentation; seed k is the run of --config.seed=k alone.
  config.num_seeds = 1
  # Variants of the model trained in the same program (engine/variants.py): named
  # overrides of seed, kernel_init, bias_init, learning_rate, weight_decay,
  # kernel/bias L1/L2 and joint.alpha/beta, each with num_seeds seeds:
  # ({'name': 'he', 'kernel_init': 'he_normal'}, ...). () = one model per
  # seed. A study makes them with config.study.vectorize.
  config.variants = ()
  # How the seeds share the program: 'vmap' (batched kernels), 'unroll' (one
  # copy of the step per seed), or 'auto' (vmap on GPU/TPU, unroll on CPU).
  config.seed_parallelism = "auto"

  # Data: any TFDS image-classification dataset by name ('cifar10', 'mnist',
  # 'stl10', 'oxford_iiit_pet', ...). data_dir '' means $TFDS_DATA_DIR, else
  # TFDS's default.
  config.dataset = "cifar10"
  config.data_dir = ""
  # TFDS split strings: 'train', 'train[:85%]', 'train+test[85%:]', ...
  config.train_split = "train"
  config.val_split = "test"
  config.image_size = 128  # the model's input size, resized on the device
  # Images are kept on the device as one uint8 array at the dataset's own
  # size; variable-size datasets (oxford_iiit_pet) need stored_size: each
  # image is resized once on the host to stored_size x stored_size, by
  # `stored_resize`: 'crop' (shorter side to stored_size, then the centre
  # square: no distortion, torchvision's Resize+CenterCrop) or 'stretch'.
  config.stored_size = 0  # 0: keep the dataset's size
  config.stored_resize = "crop"
  config.train_subset = 0  # 0: all; N: the first N examples, class-balanced
  # 0: all; N: N of those examples drawn at random (seeded by config.seed;
  # seed 003's "random sample" of 1,000 labelled images)
  config.train_sample = 0
  # 'test': validate on val_split (as the seed); 'holdout': on the last
  # holdout_size examples of train_split (val_split is then the test set
  # that --mode=eval also reports).
  config.validation = "test"
  config.holdout_size = 5000
  # > 0: the holdout is this fraction of train_split instead (rounded up, as
  # sklearn's train_test_split; seed 001's 85:15 of Oxford-IIIT Pet is 0.15
  # of 'train+test', 1,103 of 7,349). With validation='holdout',
  # val_split='' means there is no separate test set (seed 001 had none).
  config.holdout_fraction = 0.0
  # validation='kfold': the training split dealt into `folds` stratified
  # folds (kfold.py); fold=i trains on the others and validates on fold i,
  # fold=-1 trains all folds side by side in one program. val_split is
  # then the test set.
  config.folds = 5
  config.fold = -1
  config.val_subset = 0  # 0: all; N: first N validation examples, balanced
  # Class selection: a subset of class names, relabelled 0..k-1 in this
  # order (() = all), and per class name the fraction of its training
  # examples kept (seeded by config.seed), e.g. {'bird': 0.5}.
  config.classes = ()
  config.class_fraction = ml_collections.ConfigDict()
  # After the fractions: '' keeps the training set as it is; 'undersample'
  # draws every class down to the smallest class's count; 'oversample'
  # repeats the smaller classes up to the largest's (seed 002; seeded).
  config.resample = ""
  # Normalisation after scaling to [0, 1]: 'imagenet' (ImageNet's mean/std),
  # 'dataset' (per-channel mean/std of the training images, computed once
  # and recorded in metrics.jsonl) or 'none'.
  config.normalization = "imagenet"
  # A corruption applied once on the host to every split read, e.g.
  # 'gaussian_blur:1.0' (seed 002's blurred CIFAR-10; data/degrade.py).
  config.corruption = ""

  # Augmentation of training images, on the device, fresh every step.
  config.augment = ml_collections.ConfigDict()
  config.augment.hflip = False
  config.augment.vflip = False
  config.augment.rotate = False
  config.augment.rotation_degrees = (10.0, 20.0)  # |angle| ~ U(low, high)
  config.augment.rotation_both_directions = True  # random sign on the angle
  # Colour jitter as torchvision's ColorJitter (seed 003): brightness,
  # contrast and saturation factors ~ U(1 - x, 1 + x), a hue shift ~ U(-x, x)
  # of a full turn (x <= 0.5), in random order per image; 0 = off.
  config.augment.brightness = 0.0
  config.augment.contrast = 0.0
  config.augment.saturation = 0.0
  config.augment.hue = 0.0
  # Seed 001's "synthetic data" (its pytorch_utils.py): each training image
  # as 6 views: 0 as is; 1 centre crop, mirrored; 2-5 top-left, top-right,
  # bottom-left, bottom-right crops with a random hue, brightness,
  # saturation, contrast resp., each mirrored with p = 0.5. Crops are
  # resized back to the stored size (bilinear); the other augmentations
  # above then apply to the view.
  config.augment.six_views = False
  # Crop side / image side: the seed's `cut = 0.86` (its centre crop was
  # CenterCrop(int(128 * 0.85)) of the raw image; here all five use this).
  config.augment.six_views_crop = 0.86
  # (low, high) of views 2-5's colour factor (hue: the shift, in turns),
  # torchvision ColorJitter's (min, max) form; the seed's ColorJitter(hue=0.45),
  # (brightness=0.3), (saturation=(0.4, 2)), (contrast=(0.5, 1.5)).
  config.augment.six_views_hue = (-0.45, 0.45)
  config.augment.six_views_brightness = (0.7, 1.3)
  config.augment.six_views_saturation = (0.4, 2.0)
  config.augment.six_views_contrast = (0.5, 1.5)
  # True: an epoch is 6N examples, every (image, view) pair once, shuffled
  # together (the seed's 6x dataset); False: N per epoch, a random view each.
  config.augment.six_views_epoch = True
  # torchvision's RandomResizedCrop, output at the stored size (before the
  # resize to image_size): area fraction ~ U(rrc_scale), log aspect ratio
  # (w / h) ~ U(log rrc_ratio), 10 tries, else the clamped centre crop.
  config.augment.random_resized_crop = False
  config.augment.rrc_scale = (0.08, 1.0)
  config.augment.rrc_ratio = (3.0 / 4.0, 4.0 / 3.0)
  # Adversarial training: every training batch is replaced by its attack
  # on the current model, e.g. 'pgd:8/255:2/255:7' (Madry et al.) or
  # 'fgsm_rs:8/255:10/255' (Wong et al., "Fast is better than free");
  # '' = off. Same syntax as eval.attacks (jaxtransfer/engine/attacks.py).
  config.adversarial = ""

  # Model: a name from the registry (jaxtransfer/models): 'alexnet' (the
  # seed-000 AlexNet body + 2304->500->N head), 'alexnet_torchvision'
  # (torchvision's whole AlexNet), 'alexnet_bn' (seed 004's Keras AlexNet
  # with BatchNorm, 32 px), 'lenet' (seed 004's LeNet, 28 px, 1 channel).
  config.model = "alexnet"
  # model='notation' (seed 002's small nets): a preset row of its tables
  # ('v1' ... 'v4', jaxtransfer/models/notation.py), and/or the encoder and
  # classifier in its notation, e.g. "C'(32)>C(32)" and "L(128)>L'(10)".
  config.arch = ""
  config.encoder = ""
  config.classifier = ""
  # Seed 002's low-level-feature skip: the encoder's first layer's output
  # through one conv, concatenated with its final output (model 'notation').
  config.low_level_skip = False
  config.head_hidden = 500  # alexnet's head width
  # The head of the torchvision zoo (alexnet_torchvision, vgg*, resnet50,
  # densenet121): '' = the model's own (torchvision's classifier with N
  # outputs), 'linear' = one Dense layer on the pooled body features (seed
  # 003's "simple linear head").
  config.head = ""
  config.dropout = -1.0  # -1: the model's own rate (alexnet_torchvision 0.5,
                         # alexnet_bn 0.4, others none)
  config.kernel_init = "torch"  # PyTorch's default init, as in the seed study
  # Keras's initialisers too (random_normal, glorot_uniform, zeros, ...:
  # models/common.py). bias_init '' = the kernel init's companion (torch's
  # bias init for 'torch', else zeros); any kernel_init name otherwise.
  config.bias_init = ""
  # BatchNorm: weight of the old running statistics per step; -1 = the
  # model's own (alexnet_bn: Keras's 0.99).
  config.bn_momentum = -1.0
  config.compute_dtype = "float32"  # or 'bfloat16' (parameters stay float32)

  # Initialisation of the body (the head starts random unless noted):
  #   'random'
  #   'autoencoder': from an autoencoder run (ae_checkpoint), or one
  #       pre-trained into <workdir>/autoencoder with `pretrain` below when
  #       ae_checkpoint is ''
  #   'imagenet': torchvision's ImageNet AlexNet, converted into init_weights
  #       by `jaxtransfer convert`
  #   'checkpoint': a jaxtransfer classifier run's workdir (init_weights); its
  #       head is reused when it has the same shapes (same classes)
  config.init = "random"
  config.ae_checkpoint = ""
  config.init_weights = ""
  # Regexes (full match, as trainable_rules) of parameter paths that keep
  # their fresh random initialisation when weights are loaded from `init`,
  # e.g. ('head/fc8/.*',) to retrain a classifier layer from scratch
  # (big_vision's dont_load); BatchNorm statistics of those modules too.
  config.reinit = ()

  # Freezing: a preset ('none', 'head' = only the head trains, 'head+conv5'),
  # or explicit ordered (regex, trainable) rules over parameter paths such as
  # 'body/conv5/kernel'; the first full match wins, every parameter must match.
  config.freeze = "none"
  config.trainable_rules = ml_collections.config_dict.placeholder(tuple)
  # With the whole body frozen and no augmentation, compute the body's
  # features once and train the head on them (same result, far faster).
  config.cache_features = True

  # Optimisation (the seed: Adam, lr 1e-3, cross-entropy). optimizer: 'adam',
  # 'adamw', 'sgd', 'rmsprop', 'adagrad' (jaxtransfer/engine/optimizers.py); their
  # eps/decay defaults follow `framework`: 'torch' (seeds 000-002) or
  # 'keras' (seed 004); optimizer_kwargs overrides any optax argument.
  config.optimizer = "adam"
  config.framework = "torch"
  config.momentum = 0.9  # sgd
  config.nesterov = False  # sgd
  config.optimizer_kwargs = ml_collections.ConfigDict()
  # Weight decay: sgd/adam/rmsprop/adagrad add it to the gradient (PyTorch's
  # coupled L2); adamw decouples it. Frozen parameters never decay.
  config.weight_decay = 0.0
  # Keras-style regularisers added to the loss (Conv/Dense kernels and biases
  # of trainable layers): l2 * sum(w^2), l1 * sum(|w|). l2_form='norm' makes
  # the L2 term PyTorch's common hand-written one, l2 * sum over tensors of
  # ||w||_2 (`sum(torch.norm(p) for p in model.parameters())`), not squared.
  config.kernel_l2 = 0.0
  config.bias_l2 = 0.0
  config.l2_form = "squared"
  config.kernel_l1 = 0.0
  config.bias_l1 = 0.0
  # The rate the schedule below starts from (not used by 'piecewise').
  config.learning_rate = 1e-3
  # Learning-rate schedule over epochs: 'constant'; 'step' (x lr_step_factor
  # every lr_step_epochs); 'piecewise' (lr_values[i] until lr_boundaries[i],
  # in epochs); 'cosine' (to 0 at num_epochs). Optional linear warmup.
  config.lr_schedule = "constant"
  config.lr_step_epochs = 10
  config.lr_step_factor = 0.1
  config.lr_boundaries = ()
  config.lr_values = ()
  config.warmup_epochs = 0
  config.batch_size = 128  # training examples per step, all devices together
  config.num_epochs = 20  # passes over the training set
  config.eval_batch_size = 500  # examples per evaluation step
  # Accuracy per class in the metrics (train_/val_class_accuracy, a list in
  # label order) and the report (seed 002's constrained classes).
  config.per_class_metrics = False

  # Autoencoder pre-training, used when init='autoencoder' and no
  # ae_checkpoint is given (data and model fields are shared with the above).
  config.pretrain = ml_collections.ConfigDict()
  config.pretrain.num_epochs = 10
  config.pretrain.learning_rate = 1e-3
  config.pretrain.batch_size = 128

  # Evaluation (--mode=eval), settable when evaluating a finished run
  # without making it another run: L-inf attacks in pixel space, e.g.
  # ('fgsm:8/255', 'pgd:8/255:2/255:10') (jaxtransfer/engine/attacks.py).
  config.eval = ml_collections.ConfigDict()
  config.eval.attacks = ()
  # Corruption robustness: ('all',), ('gaussian_noise:3', 'contrast'), ...
  # (data/cifar10_c.py: Hendrycks & Dietterich's CIFAR-10-C corruptions, from
  # TFDS cifar10_corrupted when prepared, else applied to the split here).
  config.eval.corruptions = ()

  # Active learning (seed 003; jaxtransfer/features/active/active_learning.py): strategy '' = off;
  # 'margin', 'entropy', 'least_confidence' or 'random'. The run starts from
  # `initial` random training examples, then rounds of: train from the
  # initialisation, score the rest of the training split (the pool), add the
  # `query_size` most uncertain, until `budget` examples are labelled.
  config.active = ml_collections.ConfigDict()
  config.active.strategy = ""
  config.active.initial = 750
  config.active.query_size = 50
  config.active.budget = 1000

  # Staged runs (jaxtransfer/features/stages.py): an ordered tuple of dicts of field
  # overrides, one run per stage in <workdir>/stage_<k>_<name>/, each
  # starting from the previous stage's final weights, e.g.
  # ({'name': 'extract', 'freeze': 'head', 'num_epochs': 10},
  #  {'name': 'finetune', 'freeze': 'none', 'learning_rate': 1e-4,
  #   'reinit': ('head/fc8/.*',)}); () = one ordinary run.
  config.stages = ()

  # Checkpoints: the latest `keep_checkpoints`, plus the best by val_loss.
  config.keep_checkpoints = 2
  # Progress: the loss on the progress bar is fetched every N steps.
  config.log_every_steps = 20
  config.progress_bar = True  # tqdm bars on the terminal

  if arg.smoke:
    shrink_for_smoke(config)
  config.lock()
  # Their keys are class names / optax argument names: open for new keys.
  config.class_fraction.unlock()
  config.optimizer_kwargs.unlock()
  return config


def shrink_for_smoke(config):
  """A run of the whole pipeline in minutes on 2 CPU cores (see BENCHMARKS.md)."""
  config.image_size = 64
  config.train_subset = 2560
  config.val_subset = 1000
  config.batch_size = 64
  config.num_epochs = 4
  config.pretrain.num_epochs = 2
  config.pretrain.batch_size = 64
  config.log_every_steps = 10
  # A smoke run is ~160 steps: too short for Keras's 0.99 running average
  # of BatchNorm statistics to settle (alexnet_bn measured: validation
  # accuracy 0.108 in inference mode vs 0.372 with batch statistics), so the
  # average forgets 10x faster. Models without BatchNorm are unaffected.
  config.bn_momentum = 0.9
  return config
