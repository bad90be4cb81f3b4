"""Regenerate the protobuf and gRPC modules in this folder from its .proto files.

Run from anywhere: ``python proxy/protos/regenerate.py``. Needs grpcio-tools
(a test dependency). ``tests/unit/test_protos_fresh.py`` fails when the
committed modules differ from what this script produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROTO_FILES = (
    "appcallback.proto",
    "common.proto",
    "internals.proto",
    "mux.proto",
    "runtime.proto",
    "sentry.proto",
)


def generate(out_dir: Path) -> None:
    """Write the generated modules for every .proto here into out_dir (the repo root layout)."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(HERE / name) for name in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(ROOT)
    sys.exit(0)
