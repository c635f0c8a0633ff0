#!/usr/bin/env python3
"""Checks in the SASS that the weight-streaming kernels load weights before their dependency wait.

The one-row GEMV kernels (kernels/gemv.cu) send their first weight loads before
griddepcontrol.wait, so those loads overlap the previous kernel's end (programmatic dependent
launch). Nothing in the source can force that order: ptxas has placed the wait (SASS `ACQBULK`)
above every load in some instantiations, which then read their whole weight after the wait.
This script reads `cuobjdump -sass` of an object or binary and fails when a GemvKernel
instantiation issues no global load (`LDG`) before its first `ACQBULK`.

    scripts/check_prewait_loads.py build-gpu/kernels/CMakeFiles/ite_kernels.dir/gemv.cu.o

cuobjdump (with nvdisasm beside it) comes with the CUDA toolkit; where the toolkit lacks them,
PyPI's nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm carry the same tools.
"""
import argparse
import re
import shutil
import subprocess
import sys

INSTRUCTION = re.compile(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)")


def kernels(sass):
    """Yields (mangled name, opcodes) for every function of the dump."""
    for part in re.split(r"\n\s+Function : ", sass)[1:]:
        name = part.split("\n", 1)[0].strip()
        yield name, [m.group(1) for m in INSTRUCTION.finditer(part)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("object", help="object file or binary with sm_90 code")
    parser.add_argument("--kernel", default="GemvKernel", help="substring of the kernels checked")
    parser.add_argument("--cuobjdump", default=shutil.which("cuobjdump") or "cuobjdump")
    args = parser.parse_args()
    try:
        sass = subprocess.run([args.cuobjdump, "-sass", args.object], check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"check_prewait_loads: cuobjdump failed: {e}", file=sys.stderr)
        return 2
    checked, late = 0, []
    for name, ops in kernels(sass):
        if args.kernel not in name:
            continue
        wait = next((i for i, op in enumerate(ops) if op.startswith("ACQBULK")), None)
        if wait is None:
            continue  # a build without dependent launch (sm_80 code) has no wait to precede
        checked += 1
        if not any(op.startswith("LDG") for op in ops[:wait]):
            late.append(name)
    if checked == 0:
        print(f"check_prewait_loads: no {args.kernel} with a dependency wait in {args.object}",
              file=sys.stderr)
        return 2
    for name in late:
        print(f"no load before the wait: {name}")
    print(f"{checked - len(late)} of {checked} {args.kernel} instantiations load before the wait")
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
