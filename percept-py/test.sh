#!/usr/bin/env bash
# The Python package's tests (scripts/test runs this; README "Python"): build the wheel with
# maturin, install it into a fresh virtual environment with numpy, pytest and Pillow, and run
# percept-py/tests against the demo model on the CPU, comparing with the CLI's outputs.
#
# Cached between runs under ~/.cache/percept (PERCEPT_CACHE): a virtual environment with
# maturin, and pip's download cache. The wheel builds in the workspace's target/ (shared with
# the engine's build). Ray (for the Ray Data example's test) is installed once, with a time
# limit, into its own cached environment; when that fails the test is skipped and says why.
#
# Environment: PYTHON (default python3, >= 3.9), PERCEPT_CLI (default target/release/percept,
# built when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

py=${PYTHON:-python3}
cache=${PERCEPT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/percept}
export PIP_CACHE_DIR="$cache/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
tools="$cache/py-tools"
maturin_req='maturin>=1.9.4,<2'

"$py" -c 'import sys, venv; assert sys.version_info >= (3, 9), sys.version' ||
  { echo "percept-py/test.sh: needs Python >= 3.9 with venv ($py)" >&2; exit 1; }

if ! "$tools/bin/maturin" --version >/dev/null 2>&1; then
  rm -rf "$tools"
  "$py" -m venv "$tools"
  "$tools/bin/pip" install -q "$maturin_req"
fi
echo "percept-py: $("$tools/bin/maturin" --version) ($((SECONDS - start)) s)"

if [ -z "${PERCEPT_CLI:-}" ]; then
  export PERCEPT_CLI="$PWD/target/release/percept"
  [ -x "$PERCEPT_CLI" ] || cargo build --release --locked
fi

rm -f target/wheels/percept_engine-*.whl
"$tools/bin/maturin" build --release --locked -m percept-py/Cargo.toml --out target/wheels \
  --interpreter "$py" 2>&1 | grep -v '^\s*Compiling ' || true
wheel=$(ls target/wheels/percept_engine-*.whl 2>/dev/null | head -1)
[ -n "$wheel" ] || { echo "percept-py/test.sh: maturin built no wheel" >&2; exit 1; }
echo "percept-py: built $wheel ($((SECONDS - start)) s)"

venv=target/py-test-venv
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/pip" install -q "$wheel" numpy pytest pillow tqdm
echo "percept-py: installed into a fresh $venv ($((SECONDS - start)) s)"

# Ray (for the Ray Data example's test) is big: ~600 MB installed, 20-60 s to install even from
# pip's cache. It lives in its own cached environment, seen by the test environment through a
# .pth file (after the test environment's own packages, so the wheel and numpy come from there).
ray_env="$cache/py-ray"
ray_start=$SECONDS
py_version=$("$py" -c 'import sys; print(sys.version)')
if [ "$(cat "$ray_env/.complete" 2>/dev/null)" != "$py_version" ]; then
  rm -rf "$ray_env"
  if "$py" -m venv "$ray_env" && timeout 120 "$ray_env/bin/pip" install -q 'ray[data]' >/dev/null 2>&1; then
    echo "$py_version" >"$ray_env/.complete"
  fi
fi
if [ -f "$ray_env/.complete" ]; then
  "$venv/bin/python" - "$ray_env" <<'PY'
import pathlib, site, subprocess, sys
ray_site = subprocess.check_output([sys.argv[1] + "/bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
pathlib.Path(site.getsitepackages()[0], "percept_test_ray.pth").write_text(ray_site + "\n")
PY
  echo "percept-py: ray available ($((SECONDS - ray_start)) s)"
else
  rm -rf "$ray_env"
  export PERCEPT_PY_RAY_SKIP="pip install 'ray[data]' failed or took over 120 s in percept-py/test.sh"
  echo "percept-py: warning: $PERCEPT_PY_RAY_SKIP; the Ray Data test skips" >&2
fi

# Run from the tests folder so `import percept` finds the installed wheel, not the sources.
(cd percept-py/tests && PERCEPT_TOY_DATA="$OLDPWD/toy_data" "$OLDPWD/$venv/bin/python" -m pytest -q -rs -p no:cacheprovider .)
echo "percept-py: done ($((SECONDS - start)) s)"
