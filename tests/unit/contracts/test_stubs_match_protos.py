"""The protos are the one source of truth: the committed stubs must be exactly what they generate."""

from pathlib import Path

from grpc_tools import protoc

LIBS = Path(__file__).resolve().parents[3] / "libs"
PROTOS = sorted(LIBS.glob("orderflow_contracts/*/v1/*.proto"))
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def test_there_are_protos_for_every_service() -> None:
    assert {proto.stem for proto in PROTOS} == {"inventory", "orders", "loyalty"}


def test_committed_stubs_match_what_the_protos_generate(tmp_path: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    exit_code = protoc.main(
        [
            "protoc",
            f"-I{LIBS}",
            f"-I{include}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *map(str, PROTOS),
        ]
    )
    assert exit_code == 0

    fresh = {
        p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)
    }
    committed = {
        p.relative_to(LIBS): p.read_bytes()
        for p in (LIBS / "orderflow_contracts").rglob("*")
        if p.name.endswith(GENERATED_SUFFIXES)
    }
    assert sorted(fresh) == sorted(committed), "stubs missing or left over: run `make stubs`"
    drifted = [str(path) for path, content in fresh.items() if committed[path] != content]
    assert not drifted, f"stubs drifted from the protos: run `make stubs` ({', '.join(drifted)})"
