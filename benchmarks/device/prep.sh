#!/usr/bin/env bash
# Prepares, on a development machine (with PyPI), what benchmarks/device/run.sh
# needs on a lent GPU machine that has no network:
#   .whl/       wheels of the Python packages the GPU image lacks (cp312, x86-64)
#   .data/tfds/ a small CIFAR-10 TFDS data_dir: the first N_TRAIN train and
#               N_TEST test records of ../shared/tfds/cifar10/3.0.2, unchanged
# Both are git-ignored and travel with the device call's carry [".whl", ".data"]
# (see run.sh). Rerunnable: present wheels are kept, the data_dir is rebuilt.
#
#   bash benchmarks/device/prep.sh            # N_TRAIN=5000 N_TEST=2000 by default
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-.venv/bin/python}        # has tensorflow_datasets + array_record
SRC=${CIFAR10_SRC:-../shared/tfds/cifar10/3.0.2}
N_TRAIN=${N_TRAIN:-5000}
N_TEST=${N_TEST:-2000}

# What the GPU image (device README, KINDS.md: Python 3.12, jax, flax, optax,
# orbax, chex, absl-py, numpy, etils, pyarrow, psutil, requests, tqdm, wrapt,
# pyyaml, six, attrs, packaging, ...) lacks for tensorflow_datasets,
# ml_collections, dm_pix and tensorboardX, at this repo's .venv versions.
# protobuf is there, in a version nobody has read: it is carried too because
# the generated code of tensorflow-metadata and googleapis-common-protos needs
# protobuf >= 6.31 / 6.33.5, and this pins the combination tested here.
WHEELS=(
  tensorflow-datasets==4.9.10
  array-record==0.8.6
  dm-tree==0.1.10
  immutabledict==4.3.1
  promise==2.3
  simple-parsing==0.1.9
  docstring-parser==0.18.0
  tensorflow-metadata==1.21.0
  googleapis-common-protos==1.76.0
  protobuf==7.36.2
  termcolor==3.3.0
  toml==0.10.2
  ml-collections==1.1.0
  dm-pix==0.4.5
  tensorboardX==2.6.5
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

{ git check-ignore -q .whl/x && git check-ignore -q .data/x; } || {
  echo "prep.sh: .whl/ and .data/ must be git-ignored (.gitignore)" >&2; exit 1; }

# --- wheels ------------------------------------------------------------------
quiet() { grep -v "^WARNING: Location '" || true; }  # this pip's config noise
mkdir -p .whl
shopt -s nullglob nocaseglob
keep=()
for pin in "${WHEELS[@]}"; do
  name=${pin%%==*} version=${pin#*==}
  stem=$(echo "$name" | tr -- '-.' '__')-$version-   # wheel file name prefix
  have=(.whl/"$stem"*.whl)
  if ((${#have[@]} == 0)); then
    if [[ $name == promise ]]; then  # sdist only on PyPI: build a pure wheel
      python3 -m pip wheel -q --no-deps -w .whl "$pin" 2> >(quiet >&2)
    else
      python3 -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]/#/--platform=}" -d .whl "$pin" 2> >(quiet >&2)
    fi
    have=(.whl/"$stem"*.whl)
  fi
  ((${#have[@]} == 1)) || { echo "prep.sh: expected one wheel for $pin: ${have[*]}" >&2; exit 1; }
  [[ ${have[0]} == *-py3-none-any.whl || ${have[0]} == *-py2.py3-none-any.whl ||
     ${have[0]} == *-cp312-* || ${have[0]} == *-abi3-* ]] ||
    { echo "prep.sh: not a wheel for CPython 3.12: ${have[0]}" >&2; exit 1; }
  keep+=("${have[0]}")
done
for f in .whl/*; do  # one version of each package, or the install there fails
  [[ " ${keep[*]} " == *" $f "* ]] || { echo "removing stale $f"; rm -f "$f"; }
done
shopt -u nocaseglob

if [[ -x .venv/bin/pip ]]; then  # the pins should follow the .venv
  frozen=$(.venv/bin/pip freeze 2>/dev/null | tr 'A-Z_.' 'a-z--')
  for pin in "${WHEELS[@]}"; do
    grep -qxF -- "$(echo "$pin" | tr 'A-Z_.' 'a-z--')" <<<"$frozen" ||
      echo "note: .venv has another version than $pin"
  done
fi

# --- the CIFAR-10 subset -----------------------------------------------------
rm -rf .data/tfds.tmp
nice -n 19 "$PY" - "$SRC" .data/tfds.tmp/cifar10/3.0.2 "$N_TRAIN" "$N_TEST" <<'PYEOF'
"""Copies the first records of each split as they are (serialized bytes) and
writes dataset_info.json with the new shard lengths and byte counts."""
import json, os, shutil, sys
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

src, dst, counts = sys.argv[1], sys.argv[2], {"train": int(sys.argv[3]), "test": int(sys.argv[4])}
os.makedirs(dst)
for name in ("features.json", "label.labels.txt"):
  shutil.copy(os.path.join(src, name), dst)
with open(os.path.join(src, "dataset_info.json")) as f:
  info = json.load(f)
for split in info["splits"]:
  name = split["name"]
  assert split["shardLengths"] == [str(sum(map(int, split["shardLengths"])))], "one shard"
  file = f"cifar10-{name}.array_record-00000-of-00001"
  reader = ArrayRecordReader(os.path.join(src, file))
  n = counts[name]
  assert n <= reader.num_records(), (name, n, reader.num_records())
  records = reader.read(range(n))
  writer = ArrayRecordWriter(os.path.join(dst, file), reader.writer_options_string())
  for record in records:
    writer.write(record)
  writer.close()
  reader.close()
  split["shardLengths"] = [str(n)]
  split["numBytes"] = str(sum(map(len, records)))  # as TFDS counts it
with open(os.path.join(dst, "dataset_info.json"), "w") as f:
  json.dump(info, f, indent=2)

import numpy as np
import tensorflow_datasets as tfds
for name in counts:  # reads back as TFDS would, and the class counts
  source = tfds.data_source("cifar10", data_dir=os.path.dirname(os.path.dirname(dst)),
                            split=name, decoders={"image": tfds.decode.SkipDecoding()})
  labels = np.bincount([source[i]["label"] for i in range(len(source))], minlength=10)
  print(f"{name}: {len(source)} examples, per class {labels.tolist()} "
        f"(largest class-balanced subset {10 * labels.min()})")
PYEOF
rm -rf .data/tfds
mv .data/tfds.tmp .data/tfds

du -sh .whl .data
echo "total: $(du -sc .whl .data | tail -1 | cut -f1) KiB (the device limit is 64 MiB with the tracked files)"
