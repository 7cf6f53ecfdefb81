#!/usr/bin/env bash
# Serve alignkit's tiny demo model with `transformers serve` on 127.0.0.1, offline.
#
#   scripts/serve-tiny.sh [PORT]        (default 8000; needs the transformers[serving] extra)
#
# Then, for example:
#   alignkit eval mt-bench --model "$(python -c 'from alignkit.demo.assets import ensure_demo_assets as e; print(e().model_dir)')" \
#       --model-base-url http://127.0.0.1:8000/v1 --answers-only --limit 3
# The request's model name must be the served directory, exactly as printed below.
set -euo pipefail
PORT="${1:-8000}"
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
MODEL_DIR="$("$PY" -c 'from alignkit.demo.assets import ensure_demo_assets; print(ensure_demo_assets().model_dir)')"
echo "serving $MODEL_DIR at http://127.0.0.1:$PORT/v1" >&2
exec "$PY" -c 'import sys; from transformers.cli.transformers import main; sys.argv[0] = "transformers"; sys.exit(main())' \
    serve "$MODEL_DIR" --host 127.0.0.1 --port "$PORT" --device cpu
