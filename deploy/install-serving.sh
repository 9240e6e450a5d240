#!/bin/sh
# The serving install, in one place: the Dockerfile's two stages and tests/test_serving_install.py run
# exactly this. It is `pip install poco-rt` without extras: onnxruntime + numpy + pyzmq + FastAPI, never torch.
#
#   deploy/install-serving.sh wheel OUT_DIR       build poco-rt's wheel (run in the source tree's root)
#   deploy/install-serving.sh install WHEEL_DIR   install that wheel and its dependencies, then check torch is absent
#
# PYTHON names the interpreter whose environment is used (default: python3).
set -eu
python="${PYTHON:-python3}"
case "${1:-}" in
    wheel)
        "$python" -m pip wheel --no-deps --wheel-dir "$2" .
        ;;
    install)
        "$python" -m pip install --no-cache-dir "$2"/poco_rt-*.whl
        "$python" -c "import importlib.util, sys; sys.exit('torch got installed, but serving must not need it' if importlib.util.find_spec('torch') else 0)"
        ;;
    *)
        echo "usage: $0 wheel OUT_DIR | install WHEEL_DIR" >&2
        exit 2
        ;;
esac
