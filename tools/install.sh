#!/usr/bin/env bash
# Idempotent installer for mmdgconv's stack into ./.venv.
#
# Every step checks whether its result is already present and skips when it
# is, so a second run only verifies. A step that was interrupted leaves no
# marker behind, so the next run simply redoes it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMDGCONV_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
MMENGINE_VERSION=0.10.7
MMDET_VERSION=3.3.0
MMPRETRAIN_VERSION=1.2.0
MMACTION_VERSION=1.2.0

log() { printf '[install] %s\n' "$*"; }

have_version() {  # have_version DIST VERSION
  "$PY" - "$1" "$2" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    sys.exit(0 if version(sys.argv[1]).split('+')[0] == sys.argv[2] else 1)
except PackageNotFoundError:
    sys.exit(1)
PYEOF
}

# 1. The virtual environment. A venv whose python does not run (an
#    interrupted creation) is rebuilt.
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
  log "creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi

# 2. torch + torchvision (the only working pair on this machine).
if ! have_version torch "$TORCH_VERSION" || ! have_version torchvision "$TORCHVISION_VERSION" \
   || ! "$PY" -c 'import torchvision.ops' >/dev/null 2>&1; then
  log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
  "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

# 3. mmcv built from source with its compiled ops. torch 2.14's headers need
#    C++20 while mmcv 2.1.0's setup.py pins -std=c++14/17, so the sdist is
#    patched to C++20 before building. The wheel is cached under a name that
#    includes the torch version (pip's own wheel cache ignores it), and the
#    result is verified by importing mmcv.ops.
MMCV_CACHE="${MMDGCONV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmdgconv}/mmcv-$MMCV_VERSION-torch$TORCH_VERSION"
mmcv_ok() { "$PY" -c 'import mmcv, mmcv.ops; from mmcv.ops import nms, RoIAlign' >/dev/null 2>&1 \
            && have_version mmcv "$MMCV_VERSION"; }
build_mmcv_wheel() {
  local tmp start=$SECONDS; tmp="$(mktemp -d)"
  log "building mmcv==$MMCV_VERSION with ops (15-16 minutes on 2 cores)"
  "${PIP[@]}" "setuptools<70" wheel ninja "mmengine==$MMENGINE_VERSION"
  "$PY" -m pip download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$tmp" -q
  tar -xzf "$tmp/mmcv-$MMCV_VERSION.tar.gz" -C "$tmp"
  sed -i 's/-std=c++1[47]/-std=c++20/g' "$tmp/mmcv-$MMCV_VERSION/setup.py"
  (cd "$tmp/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
     "$PY" -m pip wheel --no-build-isolation --no-deps -w "$tmp/dist" .)
  mkdir -p "$MMCV_CACHE"
  # Move into place only once complete, so an interrupted build leaves no
  # half-written wheel in the cache.
  mv "$tmp"/dist/mmcv-*.whl "$MMCV_CACHE/"
  rm -rf "$tmp"
  log "built mmcv in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
}
install_cached_mmcv() {
  log "installing mmcv from $MMCV_CACHE"
  "${PIP[@]}" --force-reinstall --no-deps "$MMCV_CACHE"/mmcv-*.whl
  "${PIP[@]}" "$MMCV_CACHE"/mmcv-*.whl  # its pure-Python dependencies
}
if ! mmcv_ok; then
  ls "$MMCV_CACHE"/mmcv-*.whl >/dev/null 2>&1 || build_mmcv_wheel
  install_cached_mmcv
  if ! mmcv_ok; then
    log "the cached mmcv wheel does not import mmcv.ops; rebuilding it"
    rm -rf "$MMCV_CACHE"
    build_mmcv_wheel
    install_cached_mmcv
    mmcv_ok || { log "ERROR: mmcv.ops does not import after a fresh build"; exit 1; }
  fi
fi

# 4. The OpenMMLab toolboxes, test tools and the ONNX exporter's runtime. mmengine imports pkg_resources,
#    which setuptools dropped after 80, while torch 2.14.1 needs >= 77.
pkgs_ok() {
  have_version mmengine "$MMENGINE_VERSION" && have_version mmdet "$MMDET_VERSION" \
  && have_version mmpretrain "$MMPRETRAIN_VERSION" && have_version mmaction2 "$MMACTION_VERSION" \
  && "$PY" -c 'import pkg_resources, pycocotools, pytest, decord, cv2, matplotlib, e2cnn, PIL, onnx, onnxruntime, yaml' >/dev/null 2>&1
}
if ! pkgs_ok; then
  log "installing mmengine, mmdet, mmpretrain, mmaction2 and test tools"
  "${PIP[@]}" "mmengine==$MMENGINE_VERSION" "mmdet==$MMDET_VERSION" \
    "mmpretrain==$MMPRETRAIN_VERSION" "mmaction2==$MMACTION_VERSION" \
    pycocotools "pytest>=7" pytest-timeout decord opencv-python-headless matplotlib e2cnn pillow \
    onnx onnxruntime pyyaml \
    "setuptools>=77,<81" \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "mmcv==$MMCV_VERSION"
fi

# 4b. openmim, for `mim train mmdgconv CONFIG` / `mim test`. Without its
#     opendatalab dependency: that pulls openxlab, which pins setuptools 60
#     and requests 2.28 (breaking the editable install and the stack), and
#     mim's commands never import it.
mim_ok() { have_version openmim 0.3.9 && "$VENV/bin/mim" --version >/dev/null 2>&1; }
if ! mim_ok; then
  log "installing openmim (without opendatalab)"
  "${PIP[@]}" --no-deps openmim==0.3.9
  "${PIP[@]}" click colorama model-index pandas requests rich tabulate
fi

# 5. The package itself, editable, with its compiled operators
#    (mmdgconv/csrc -> mmdgconv/_ext*.so, about a minute). Checked from a
#    neutral directory, so the source tree in the working directory cannot
#    mask a missing install; rebuilt when a C++ source is newer than the
#    built library. The install also links configs/, tools/ and
#    model-index.yml into mmdgconv/.mim (setup.py), where mmengine and mim
#    look for them. (--use-pep517: pip's legacy `setup.py develop` would
#    build in an isolated environment without torch.)
ext_current() {
  local lib; lib="$(ls "$ROOT"/mmdgconv/_ext*.so 2>/dev/null | head -n 1)"
  [ -n "$lib" ] && [ -z "$(find "$ROOT/mmdgconv/csrc" -newer "$lib" -name '*.cpp')" ] \
    && (cd / && "$PY" -c 'import torch, mmdgconv._ext') >/dev/null 2>&1
}
if ! (cd / && "$PY" -c 'import mmdgconv, os, sys; sys.exit(0 if os.path.realpath(mmdgconv.__file__).startswith(sys.argv[1]) else 1)' \
      "$ROOT/mmdgconv") >/dev/null 2>&1 || [ ! -e "$ROOT/mmdgconv/.mim/configs" ] || ! ext_current; then
  log "installing mmdgconv (editable, building mmdgconv._ext)"
  "${PIP[@]}" --no-build-isolation --use-pep517 --no-deps -e "$ROOT"
  ext_current || { log "ERROR: mmdgconv._ext was not built or does not import"; exit 1; }
fi
# mmengine (for `mmdgconv::` config paths) and mim look for the package at
# <site-packages>/mmdgconv, beside its metadata, as the toolboxes' own
# `setup.py develop` installs provided. A PEP 660 editable install has no
# such folder, so a link to the checkout stands there.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ "$(readlink -f "$SITE/mmdgconv" 2>/dev/null)" != "$ROOT/mmdgconv" ]; then
  if [ -e "$SITE/mmdgconv" ] && [ ! -L "$SITE/mmdgconv" ]; then
    log "ERROR: $SITE/mmdgconv is a copy of another install; uninstall it first"
    exit 1
  fi
  ln -sfn "$ROOT/mmdgconv" "$SITE/mmdgconv"
fi

log "ready: $("$PY" -c 'import torch, mmcv, mmdet, mmengine; print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmdet {mmdet.__version__}")')"
