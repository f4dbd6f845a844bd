"""Build the Fourier bottleneck CUDA library with nvcc.

    python -m restore.kernels.fourier_bottleneck.build [--force] [--nvcc PATH] [--out DIR]

Compiles fourier_bottleneck_kernel.cu into build/libfourier_bottleneck.so with SASS for sm_80,
sm_86, sm_89 and sm_90 plus compute_90 PTX (for newer GPUs to JIT), and writes ptxas' resource
usage (registers, shared memory, spills per kernel and architecture) to build/resource_usage.txt.
A stamp of the sources and flags makes a repeated call a no-op.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ("fourier_bottleneck_kernel.cu", "fourier_bottleneck_blocks.cuh", "fourier_bottleneck.h")
ARCHS = ("80", "86", "89", "90")
PTX_ARCH = "90"
LIBRARY_NAME = "libfourier_bottleneck.so"
DEFAULT_BUILD_DIR = HERE / "build"


class BuildError(RuntimeError):
    pass


def find_nvcc(explicit=None):
    """nvcc from the argument, $NVCC, /usr/local/cuda/bin (before PATH: /usr/local/bin may hold a
    wrapper that is not the toolkit's) or PATH."""
    for candidate in (explicit, os.environ.get("NVCC"), "/usr/local/cuda/bin/nvcc", shutil.which("nvcc")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise BuildError("nvcc not found: install the CUDA toolkit or pass --nvcc /path/to/nvcc")


def nvcc_command(nvcc, output):
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    gencode.append(f"-gencode=arch=compute_{PTX_ARCH},code=compute_{PTX_ARCH}")
    return [
        nvcc, "-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC", "-lineinfo",
        "-Xptxas", "-v", "--threads", "0", *gencode,
        "-o", str(output), str(HERE / SOURCES[0]),
    ]


def _stamp(command):
    digest = hashlib.sha256()
    for name in (*SOURCES, Path(__file__).name):  # this file too: it decides flags and the usage table
        digest.update((HERE / name).read_bytes())
    digest.update(" ".join(command[1:]).encode())
    return digest.hexdigest()


def parse_resource_usage(ptxas_log):
    """Rows of (kernel, arch, registers, shared bytes, spill stores, spill loads) from -Xptxas -v."""
    rows, arch, kernel, spills = [], None, None, (0, 0)
    for line in ptxas_log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(sm_\d+)'", line)
        if m:
            kernel, arch = m.group(1), m.group(2)
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            spills = (int(m.group(1)), int(m.group(2)))
            continue
        m = re.search(r"Used (\d+) registers.*?(?:(\d+) bytes smem)?", line)
        if m and kernel:
            smem = re.search(r"(\d+) bytes smem", line)
            rows.append((kernel, arch, int(m.group(1)), int(smem.group(1)) if smem else 0, *spills))
            kernel, spills = None, (0, 0)
    return rows


def _demangled(name):
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt:
        return name
    out = subprocess.run([cxxfilt, name], capture_output=True, text=True)
    demangled = out.stdout.strip() or name
    demangled = demangled.replace("(anonymous namespace)::", "")
    return re.sub(r"\(.*\)$", "", demangled).removeprefix("void ")


def format_resource_usage(rows):
    lines = ["kernel | arch | registers/thread | static smem (B) | spill stores (B) | spill loads (B)",
             "--- | --- | --- | --- | --- | ---"]
    for kernel, arch, regs, smem, st, ld in sorted(rows, key=lambda row: (row[1], _demangled(row[0]))):
        lines.append(f"{_demangled(kernel)} | {arch} | {regs} | {smem} | {st} | {ld}")
    return "\n".join(lines) + "\n"


def build(force=False, nvcc=None, build_dir=None, quiet=False):
    """Compile (unless up to date) and return the library's path."""
    build_dir = Path(build_dir or DEFAULT_BUILD_DIR)
    library = build_dir / LIBRARY_NAME
    command = nvcc_command(find_nvcc(nvcc), library)
    stamp_file = build_dir / "stamp.txt"
    stamp = _stamp(command)
    if not force and library.is_file() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return library
    build_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PATH=f"{Path(command[0]).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not quiet:
        print("building", library.name, "for", ", ".join(f"sm_{a}" for a in ARCHS), f"+ compute_{PTX_ARCH} PTX",
              file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise BuildError(f"nvcc failed (exit {done.returncode}):\n{log}")
    (build_dir / "ptxas.log").write_text(log)
    (build_dir / "resource_usage.txt").write_text(format_resource_usage(parse_resource_usage(log)))
    stamp_file.write_text(stamp)
    return library


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--nvcc", help="path of nvcc")
    parser.add_argument("--out", help=f"build directory (default {DEFAULT_BUILD_DIR})")
    args = parser.parse_args(argv)
    try:
        library = build(force=args.force, nvcc=args.nvcc, build_dir=args.out)
    except BuildError as err:
        print(f"fourier_bottleneck.build: error: {err}", file=sys.stderr)
        return 1
    print(library)
    print((library.parent / "resource_usage.txt").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
