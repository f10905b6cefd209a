#!/usr/bin/env bash
# Starts jaxtransfer on one or more processes.
#
#   ./launch.sh --config=configs/ae_init.py --workdir=W              one process, all local devices
#   ./launch.sh --num_processes=2 --config=configs/ae_init.py --workdir=W
#                                    N processes on this machine (loopback coordinator)
#   srun -N 4 --ntasks-per-node=1 ./launch.sh --config=... --workdir=W
#                                    under SLURM: one process per task; JAX finds
#                                    the coordinator from SLURM's environment
#
# Every other flag goes to `python -m jaxtransfer.main` unchanged. With several
# local processes, process 0 prints to this terminal and the others log to
# $LAUNCH_LOG_DIR (default: a temporary directory named at start). If one
# process fails, the others are stopped and the exit status is non-zero.
set -euo pipefail

num_processes=1
args=()
for arg in "$@"; do
  case "$arg" in
    --num_processes=*) num_processes="${arg#*=}" ;;
    *) args+=("$arg") ;;
  esac
done
python="${PYTHON:-python}"

if [[ -n "${SLURM_STEP_ID:-}" && "${SLURM_NTASKS:-1}" -gt 1 ]]; then
  # Inside `srun`: this is one of the tasks; jax.distributed finds the rest.
  exec "$python" -m jaxtransfer.main "${args[@]}"
fi

if [[ "$num_processes" -le 1 ]]; then
  exec "$python" -m jaxtransfer.main "${args[@]}"
fi

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log_dir="${LAUNCH_LOG_DIR:-$(mktemp -d -t jaxtransfer-launch-XXXXXX)}"
mkdir -p "$log_dir"
echo "launch.sh: $num_processes processes, coordinator 127.0.0.1:$port, logs of processes 1.. in $log_dir" >&2

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup INT TERM

for ((id = 0; id < num_processes; id++)); do
  common=(--coordinator_address="127.0.0.1:$port" --num_processes="$num_processes" --process_id="$id")
  if [[ "$id" -eq 0 ]]; then
    "$python" -m jaxtransfer.main "${common[@]}" "${args[@]}" &
  else
    "$python" -m jaxtransfer.main "${common[@]}" "${args[@]}" > "$log_dir/process_$id.log" 2>&1 &
  fi
  pids+=("$!")
done

status=0
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then
    status=1
    cleanup
  fi
done
if [[ "$status" -ne 0 ]]; then
  echo "launch.sh: a process failed; see $log_dir" >&2
fi
exit "$status"
