"""Rebuild .proto sources from the descriptors inside an installed flwr wheel.

Flower ships only generated `*_pb2` modules, so the Fleet API's message types are
recovered from their serialized FileDescriptorProto. The output is vendored by
crates/bedside-federate (compiled with protox + prost, no protoc) and this script
doubles as the compatibility check: `--check DIR` prints what changed between the
installed flwr and the vendored files and exits 1 on any difference.

Usage: python tools/flower/dump_protos.py OUT_DIR
       python tools/flower/dump_protos.py --check crates/bedside-federate/proto
"""

from __future__ import annotations

import difflib
import importlib
import sys
from pathlib import Path

import flwr
from google.protobuf import descriptor_pb2

# The Fleet service and everything its messages import.
ROOTS = ["fleet", "heartbeat", "message", "fab", "run"]

LABELS = {1: "optional", 2: "required", 3: "repeated"}
TYPES = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
    7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32",
    16: "sfixed64", 17: "sint32", 18: "sint64",
}


def load(name: str) -> descriptor_pb2.FileDescriptorProto:
    module = importlib.import_module(f"flwr.proto.{name}_pb2")
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.ParseFromString(module.DESCRIPTOR.serialized_pb)
    return fdp


def type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in (11, 14):  # message, enum: fully qualified with a leading dot
        return field.type_name
    return TYPES[field.type]


def render_enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    for value in enum.value:
        lines.append(f"{indent}  {value.name} = {value.number};")
    lines.append(f"{indent}}}")
    return lines


def render_message(msg: descriptor_pb2.DescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}message {msg.name} {{"]
    maps = {n.name: n for n in msg.nested_type if n.options.map_entry}
    for enum in msg.enum_type:
        lines += render_enum(enum, indent + "  ")
    for nested in msg.nested_type:
        if not nested.options.map_entry:
            lines += render_message(nested, indent + "  ")
    # Real oneofs group their fields; proto3 `optional` creates synthetic ones.
    real_oneofs: dict[int, list[str]] = {}
    for field in msg.field:
        entry_name = field.type_name.rsplit(".", 1)[-1]
        if field.label == 3 and field.type == 11 and entry_name in maps:
            entry = maps[entry_name]
            key, value = entry.field[0], entry.field[1]
            text = f"map<{type_name(key)}, {type_name(value)}> {field.name} = {field.number};"
        else:
            label = ""
            if field.label == 3:
                label = "repeated "
            elif field.proto3_optional:
                label = "optional "
            text = f"{label}{type_name(field)} {field.name} = {field.number};"
        if field.HasField("oneof_index") and not field.proto3_optional:
            real_oneofs.setdefault(field.oneof_index, []).append(text)
            if len(real_oneofs[field.oneof_index]) == 1:
                lines.append(f"{indent}  @@ONEOF{field.oneof_index}@@")
        else:
            lines.append(f"{indent}  {text}")
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("@@ONEOF"):
            index = int(stripped[7:-2])
            out.append(f"{indent}  oneof {msg.oneof_decl[index].name} {{")
            out += [f"{indent}    {t}" for t in real_oneofs[index]]
            out.append(f"{indent}  }}")
        else:
            out.append(line)
    out.append(f"{indent}}}")
    return out


def render(fdp: descriptor_pb2.FileDescriptorProto) -> str:
    lines = [
        f"// Derived from flwr {flwr.__version__} ({fdp.name}) by tools/flower/dump_protos.py.",
        "// Flower Labs GmbH, Apache-2.0. Do not edit: regenerate instead.",
        'syntax = "proto3";',
        "",
        f"package {fdp.package};",
        "",
    ]
    for dep in fdp.dependency:
        lines.append(f'import "{dep}";')
    if fdp.dependency:
        lines.append("")
    for enum in fdp.enum_type:
        lines += render_enum(enum, "")
        lines.append("")
    for msg in fdp.message_type:
        lines += render_message(msg, "")
        lines.append("")
    for service in fdp.service:
        lines.append(f"service {service.name} {{")
        for method in service.method:
            lines.append(
                f"  rpc {method.name}({'stream ' if method.client_streaming else ''}"
                f"{method.input_type}) returns ({'stream ' if method.server_streaming else ''}"
                f"{method.output_type}) {{}}"
            )
        lines.append("}")
        lines.append("")
    return "\n".join(lines)


def collect() -> dict[str, str]:
    files: dict[str, str] = {}
    todo = list(ROOTS)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        fdp = load(name)
        files[fdp.name] = render(fdp)
        for dep in fdp.dependency:
            if dep.startswith("flwr/proto/"):
                todo.append(dep.removeprefix("flwr/proto/").removesuffix(".proto"))
    return files


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--check":
        base = Path(args[1])
        changed = 0
        for name, text in sorted(collect().items()):
            path = base / name
            old = path.read_text() if path.exists() else ""
            # The header names the flwr version; compare what follows it.
            old_body = old.split("\n", 2)[2] if old.count("\n") >= 2 else old
            new_body = text.split("\n", 2)[2]
            if old_body != new_body:
                changed += 1
                sys.stdout.writelines(
                    difflib.unified_diff(
                        old_body.splitlines(True), new_body.splitlines(True), str(path), name
                    )
                )
        print(f"flwr {flwr.__version__}: {changed} proto file(s) differ from {base}")
        return 1 if changed else 0
    # `--check` without its folder would otherwise be taken for an output folder.
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__)
        return 2
    for name, text in collect().items():
        path = Path(args[0]) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
