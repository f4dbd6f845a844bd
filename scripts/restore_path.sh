# Sourced by the GPU scripts: makes `import restore.*` load this checkout without installing it
# (the GPU machine has no `pip install -e .`), through symlinks in "$1" that mirror pyproject's
# package-dir mapping (restore.kernels -> kernels/, ...).
restore_path() {
    local shim="$1/restore_path/restore" repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    mkdir -p "$shim"
    for d in kernels benchmarks runtime export trainer; do ln -sfn "$repo/$d" "$shim/$d"; done
    export PYTHONPATH="$1/restore_path${PYTHONPATH:+:$PYTHONPATH}"
}
