#!/usr/bin/env bash
# The GPU check, in two halves, for a machine with a GPU but no network, no Rust toolchain
# and no ../shared (the device machine this project is sometimes lent; see the README's
# "GPU" section). It takes at most 64 MiB along and runs in under 5 minutes.
#
#   scripts/gpu-check.sh pack   # here: release binaries with the `vulkan` feature (SPIR-V,
#                               # fusion, autotune), a CIFAR-10 subset, the Vulkan loader
#                               # packages, all in gpu-bundle/ (ignored by git)
#   scripts/gpu-check.sh run    # there, from the repository root with gpu-bundle/ carried:
#                               # the four benchmark models on the GPU (training and
#                               # inference samples/s), PyTorch CUDA on the same models, one
#                               # epoch of report 001's pooled CIFAR-10 CNN, GPU memory
#
# Figures go to stdout and, when OUT is set (the device tool's output folder), to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=gpu-bundle

pack() {
  grep -qx "/$bundle/" .git/info/exclude 2>/dev/null || echo "/$bundle/" >>.git/info/exclude
  rm -rf "$bundle" && mkdir -p "$bundle/debs" "$bundle/data/cifar10/cifar10-jpeg"
  cargo build --release -p experiments --features vulkan --bin bench --bin cifar10
  cp target/release/bench target/release/cifar10 "$bundle/"
  strip "$bundle/bench" "$bundle/cifar10" 2>/dev/null || true
  cp experiments/bench.toml experiments/cifar10.toml scripts/bench_pytorch.py "$bundle/"
  # 500 training and 100 test pictures of each class: one epoch is a measurement, not a result.
  local src=datasets/cifar10/cifar10-jpeg
  [ -d "$src" ] || { echo "no $src: fetch cifar10 first (datasets fetch cifar10 --from ...)"; exit 1; }
  for part in train:500 test:100; do
    local name="${part%%:*}" count="${part#*:}"
    for class in "$src/$name"/*/; do
      local to="$bundle/data/cifar10/cifar10-jpeg/$name/$(basename "$class")"
      mkdir -p "$to"
      find "$class" -type f | sort | head -n "$count" | xargs cp -t "$to"
    done
  done
  # The Vulkan loader and GL dispatch libraries, unpacked there (the device README's recipe).
  mkdir -p /tmp/amd64/partial
  local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd "$bundle/debs" && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
  du -sh "$bundle"
  echo "packed: carry $bundle, then run: bash scripts/gpu-check.sh run"
}

run() {
  local out="${OUT:-$bundle/out}"
  mkdir -p "$out"
  for f in "$bundle"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
  local t0=$SECONDS
  echo "== PyTorch CUDA, the same four models"
  python3 "$bundle/bench_pytorch.py" --config "$bundle/bench.toml" --device cuda --runs 3 \
    --seconds 2 --out "$out/pytorch-cuda.jsonl" 2>&1 | tee "$out/pytorch-cuda.txt" || true
  echo "== burn-reports on the GPU (vulkan: SPIR-V, fusion, autotune)"
  "$bundle/bench" --config "$bundle/bench.toml" --device gpu --runs 3 --seconds 2 \
    --pytorch "$out/pytorch-cuda.jsonl" --out "$out/bench" 2>&1 | tee "$out/bench.txt"
  echo "== one epoch of report 001's pooled CIFAR-10 CNN (5,000 training pictures)"
  "$bundle/cifar10" --config "$bundle/cifar10.toml" --only pooling --epochs 1 --device gpu \
    --data-dir "$bundle/data" --out "$out/cifar10" 2>&1 | tail -n 25 | tee "$out/cifar10.txt"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/GPU memory in use at the end: /' || true
  echo "gpu-check took $((SECONDS - t0)) s"
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh pack | run" >&2; exit 2 ;;
esac
