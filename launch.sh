#!/usr/bin/env bash
# Starts jaxtransfer with the flags given, e.g.
#   ./launch.sh --config=configs/ae_init.py --workdir=workdirs/ae_init
# One process drives all local devices (jax.jit over a 'data' mesh axis).
set -euo pipefail
exec python -m jaxtransfer.main "$@"
