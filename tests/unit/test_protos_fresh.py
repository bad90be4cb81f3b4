"""The committed generated modules must match what regenerate.py produces."""

from __future__ import annotations

from pathlib import Path

from proxy.protos import regenerate


def test_generated_modules_match_the_proto_files(tmp_path: Path) -> None:
    regenerate.generate(tmp_path)
    generated = sorted((tmp_path / "proxy" / "protos").iterdir())
    assert generated, "protoc produced nothing"
    for path in generated:
        committed = regenerate.HERE / path.name
        assert committed.exists(), f"{path.name} is not committed"
        assert committed.read_text() == path.read_text(), (
            f"{path.name} is stale: run python proxy/protos/regenerate.py"
        )


def test_wire_names_match_dapr() -> None:
    from proxy.protos import internals_pb2

    service = internals_pb2.DESCRIPTOR.services_by_name["ServiceInvocation"]
    assert service.full_name == "dapr.proto.internals.v1.ServiceInvocation"
    request = internals_pb2.InternalInvokeRequest.DESCRIPTOR
    assert {f.name: f.number for f in request.fields} == {
        "ver": 1,
        "metadata": 2,
        "message": 3,
        "actor": 4,
    }
    stream = internals_pb2.InternalInvokeResponseStream.DESCRIPTOR
    assert {f.name: f.number for f in stream.fields} == {"response": 1, "payload": 2}


def test_the_cli_imports_no_grpc_before_tuning_it() -> None:
    """proxy.hop.grpc_tuning must set GRPC_EXPERIMENTS before grpc loads (it is read once)."""
    import subprocess
    import sys

    probe = "import sys, proxy.cli; print('grpc' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
