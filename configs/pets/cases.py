"""Seed 001's eight cases (its "AlexNet Result Summary" table) as study arms.

Every case is SGD with momentum and a step-decayed learning rate: the table's
"lr 0.0003, 0.00003, ..." with "epoch 7, 7, 7, 4" is lr_values with an epoch
count each (a piecewise schedule). Cases 7 and 8 fine-tune "on top of case
6": a staged run whose first stage is case 6 itself and whose second stage is
the row's fine-tuning (its lr and epochs are the row's).

  case  technique                                   what trains       data
  1     fine-tuning                                 everything        -
  2     fine-tuning                                 everything        norm.
  3     fine-tuning                                 everything        norm. + 6 views
  4     feature extraction: only the last layer     fc8               norm.
  5     feature extraction: classifier trained on   fc6-fc8           norm.
  6     feature extraction: classifier from scratch fc6-fc8, re-init  norm.
  7     case 6, then fine-tuning                    then everything   norm.
  8     case 6, then fine-tuning                    then everything   norm. + 6 views

"norm." is the config's normalisation for the seed's "yes" ('dataset': the
training images' mean/std, as the seed); "no" is 'none' (pixels in [0, 1]).
The last layer (fc8) is always new: the source's classes are not the
target's (base config: reinit=('head/fc8/.*',)).
"""

from __future__ import annotations

# (case, lr, epochs per lr, normalised, six views, technique)
_ROWS = (
    (1, 3e-4, (7, 7, 7, 4), False, False, "fine-tuning"),
    (2, 2e-4, (7, 7, 7, 4), True, False, "fine-tuning"),
    (3, 1e-4, (7, 7, 4), True, True, "fine-tuning"),
    (4, 2.5e-4, (7, 7, 4), True, False,
     "feature extraction (only last layer trained)"),
    (5, 1.5e-4, (7, 7, 4), True, False,
     "feature extraction (classifier further trained)"),
    (6, 3e-4, (9, 9, 7), True, False,
     "feature extraction (classifier scratch trained)"),
    (7, 2e-4, (7, 7, 7, 4), True, False, "fine-tuning on top of case 6"),
    (8, 3e-4, (7, 7, 7, 4), True, True, "fine-tuning on top of case 6"),
)
FREEZE = {1: "none", 2: "none", 3: "none", 4: "last", 5: "head", 6: "head"}
# The seed's table's columns (report_columns.py).
COLUMNS = ("train_accuracy", "val_accuracy", "lr", "epochs", "train_loss",
           "val_loss", "normalization", "synthetic_data", "technique")
SEED_VAL_ACCURACY = {1: 56.86, 2: 64.67, 3: 66.85, 4: 61.31, 5: 60.49,
                     6: 61.22, 7: 65.03, 8: 69.75}


def schedule(lr: float, epochs: tuple[int, ...]) -> dict:
  """lr, lr / 10, lr / 100, ... for epochs[0], epochs[1], ... epochs."""
  boundaries = [sum(epochs[:i + 1]) for i in range(len(epochs) - 1)]
  return {"lr_schedule": "piecewise", "learning_rate": lr,
          "lr_values": tuple(float(f"{lr * 0.1**i:.6g}")
                             for i in range(len(epochs))),
          "lr_boundaries": tuple(boundaries), "num_epochs": sum(epochs)}


def arms(*, normalization: str = "dataset", epoch_scale: float = 1.0,
         lr_steps: int = 0, pretrained: bool = True,
         cases=tuple(range(1, 9))) -> tuple[dict, ...]:
  """The cases as named arms. epoch_scale shrinks every epoch count (at
  least 1 each), lr_steps > 0 keeps only each schedule's first lr_steps
  rates (smoke runs); pretrained=False (a random body) leaves out the
  re-initialisation of case 6's classifier, which needs weights to load."""
  def _epochs(epochs: tuple[int, ...], scale: float) -> tuple[int, ...]:
    return tuple(max(1, round(e * scale))
                 for e in epochs[:lr_steps or len(epochs)])

  rows = {row[0]: row for row in _ROWS}
  six = lambda on: {"augment.six_views": on}
  reinit_classifier = {"reinit": ("head/.*",)} if pretrained else {}
  _, lr6, epochs6, _, _, _ = rows[6]
  case6 = {"freeze": "head", **reinit_classifier,
           **schedule(lr6, _epochs(epochs6, epoch_scale))}
  out = []
  for case in cases:
    _, lr, epochs, normalised, views, technique = rows[case]
    arm = {"name": f"case{case}",
           "normalization": normalization if normalised else "none",
           "notes": {"technique": technique,
                     "seed_val_accuracy": f"{SEED_VAL_ACCURACY[case]:.2f}"}}
    finetune = {**schedule(lr, _epochs(epochs, epoch_scale)), **six(views)}
    if case == 6:
      arm.update(case6)
    elif case in FREEZE:
      arm.update(freeze=FREEZE[case], **finetune)
    else:  # 7, 8: case 6, then fine-tuning of every layer
      arm.update(reinit_classifier)  # stage 0's (the base reinit)
      arm["stages"] = (
          {"name": "case6", "freeze": "head", **schedule(
              lr6, _epochs(epochs6, epoch_scale))},
          {"name": "finetune", "freeze": "none", **finetune})
    out.append(arm)
  return tuple(out)
