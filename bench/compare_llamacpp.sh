#!/usr/bin/env bash
# Side-by-side decode/prefill benchmark: optiq vs llama.cpp's llama-bench on the same random-weight
# model of a real shape, in one run on one machine. llama.cpp is built outside the repo; pass its
# llama-bench binary. Example:
#   bench/compare_llamacpp.sh path/to/llama.cpp/build/bin/llama-bench qwen3-0.6b 32000
set -euo pipefail
LLAMA_BENCH=${1:?path to llama-bench}
SHAPE=${2:-qwen3-0.6b}
VOCAB=${3:-32000}
DEPTHS=${DEPTHS:-0}
GEN=${GEN:-64}
THREADS=${THREADS:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OPTIQ=${OPTIQ:-$ROOT/build/optiq}
WORK=${WORK:-/tmp/optiq-bench-models}
mkdir -p "$WORK"
q4=$WORK/$SHAPE-v$VOCAB-q4_0.gguf
mlx=$WORK/$SHAPE-v$VOCAB-mlx4
[ -f "$q4" ] || "$OPTIQ" make-model --shape "$SHAPE" --vocab "$VOCAB" --format gguf-q4_0 -o "$q4"
[ -d "$mlx" ] || "$OPTIQ" make-model --shape "$SHAPE" --vocab "$VOCAB" --format mlx4 -o "$mlx"
echo "== read bandwidth + optiq, MLX 4-bit (g64)"
OPTIQ_THREADS=$THREADS "$OPTIQ" bench "$mlx" --depth "$DEPTHS" --gen "$GEN" --prompt-len 512
echo "== optiq, GGUF Q4_0 (the same file llama.cpp reads)"
OPTIQ_THREADS=$THREADS "$OPTIQ" bench "$q4" --depth "$DEPTHS" --gen "$GEN" --prompt-len 512 --no-bandwidth
echo "== llama.cpp llama-bench, GGUF Q4_0"
"$LLAMA_BENCH" -m "$q4" -t "$THREADS" -p 512 -n "$GEN" -d "$DEPTHS" -fa 1 -r 2
