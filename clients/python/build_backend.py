"""The package's build backend: setuptools, after generating the gRPC code from api/proto.

The code in `src/wasmos_client/_proto/` is generated at build (and editable install) time by
grpcio-tools' protoc from the repository's `api/proto`, never committed: the `.proto` files are
the contract, so a wheel built from a checkout always matches the master built from it, and
there is no second copy to drift or to check. The output is rewritten to import its siblings
relatively (protoc writes `from wasmos.v1 import ...`), so the package claims no top-level
`wasmos` module. An sdist carries the generated files, so a wheel can be built from it without
the repository.

Run `python build_backend.py` to regenerate by hand.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (the rest of PEP 517/660 as setuptools has it)

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "api" / "proto"
OUT = HERE / "src" / "wasmos_client" / "_proto"
# The files a scheduler needs (its service and the shared types) and the operator API (for
# tools that also watch the cluster); not the masters' Raft or the agents' API.
PROTOS = ["common", "scheduler", "operator"]
_IMPORT = re.compile(r"^from wasmos\.v1 import ", re.MULTILINE)


def generate() -> None:
    """Writes `_proto/` from `api/proto`; keeps an existing one when there is no `api/proto`
    (building from an sdist)."""
    if not PROTO_ROOT.is_dir():
        if (OUT / "scheduler_pb2.py").is_file():
            return
        raise RuntimeError(
            f"{PROTO_ROOT} is missing and no generated code is in {OUT}: build the package "
            "from a wasmos checkout (clients/python/) or from its sdist"
        )
    from grpc_tools import protoc  # the pinned build requirement

    include = Path(protoc.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
        ] + [str(PROTO_ROOT / "wasmos" / "v1" / f"{p}.proto") for p in PROTOS]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {PROTO_ROOT} (see its message above)")
        generated = Path(tmp) / "wasmos" / "v1"
        staged = Path(tmp) / "staged"
        staged.mkdir()
        for f in sorted(generated.iterdir()):
            text = _IMPORT.sub("from . import ", f.read_text())
            (staged / f.name).write_text(text)
        (staged / "__init__.py").write_text(
            '"""Generated from api/proto/wasmos/v1 by grpcio-tools; do not edit."""\n'
        )
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, OUT)


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    generate()
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    generate()
    return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    generate()
    return str(_setuptools.build_sdist(sdist_directory, config_settings))


if __name__ == "__main__":
    os.chdir(HERE)
    generate()
    print(f"generated {OUT}", file=sys.stderr)
