"""ONNX's own conformance cases (the node tests shipped in the onnx wheel:
onnx/backend/test/data/node/test_*/model.onnx + test_data_set_0) for every operator the
native backend supports, through the native f32 generator compiled for the host.

Each case either passes (rtol 1e-4, atol 1e-5 against ONNX's expected outputs) or is
rejected at compile time with one line naming the operator; a wrong answer fails the
test.  All cases go into one shared library (one C function per case), so the whole
suite is one compiler run.  Inputs the backend takes only as compile-time constants
(Conv weights and bias, Reshape's shape: Operator.CONST_INPUTS) are given to it as
initializers from the case's data, as a deployment would; every other input is a
run-time input.  `pytest -s` prints the table.
"""

import ctypes
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import pytest
from mnist_mcu.errors import UserError
from mnist_mcu.native import compile_graph
from mnist_mcu.native.host import KERNEL_INCLUDE, build_shared, kernel_sources
from mnist_mcu.native.ops import REGISTRY, SUPPORTED
from onnx import numpy_helper

NODE_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
RTOL, ATOL = 1e-4, 1e-5
TARGET = 0.90


def _read_pb(path):
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def cases():
    """(name, op, model, inputs, outputs) of every single-node case of a supported operator."""
    out = []
    for d in sorted(NODE_DIR.glob("test_*")):
        model = onnx.load(str(d / "model.onnx"))
        ops = [n.op_type for n in model.graph.node]
        if len(ops) != 1 or ops[0] not in SUPPORTED:
            continue          # other operators, or function-expanded variants (several other operators)
        data = d / "test_data_set_0"
        ins = [_read_pb(data / f"input_{i}.pb") for i in range(len(model.graph.input))]
        outs = [_read_pb(data / f"output_{i}.pb") for i in range(len(model.graph.output))]
        out.append((d.name, ops[0], model, ins, outs))
    return out


def freeze_constant_inputs(model, inputs):
    """Turn the inputs the operator needs as constants into initializers; returns the run-time inputs."""
    node = model.graph.node[0]
    const_pos = REGISTRY[node.op_type].CONST_INPUTS
    names = {node.input[i] for i in const_pos if i < len(node.input) and node.input[i]}
    keep, runtime = [], []
    for vi, arr in zip(list(model.graph.input), inputs):
        if vi.name in names:
            model.graph.initializer.append(numpy_helper.from_array(arr, vi.name))
        else:
            keep.append(vi)
            runtime.append(arr)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return runtime


def _run(lib, entry, inputs, out_shapes):
    fn = getattr(lib, entry)
    fn.restype = ctypes.c_int
    ins = [np.ascontiguousarray(a, np.float32) for a in inputs]
    outs = [np.zeros(s, np.float32) for s in out_shapes]
    in_arr = (ctypes.c_void_p * max(1, len(ins)))(*[a.ctypes.data for a in ins])
    out_arr = (ctypes.c_void_p * len(outs))(*[a.ctypes.data for a in outs])
    assert fn(in_arr, out_arr) == 0
    return outs


def run_suite(tmp_path):
    """{case: ("pass" | "reject" | "wrong", detail)} and the op of each case."""
    results, ops, pending = {}, {}, []
    for i, (name, op, model, ins, outs) in enumerate(cases()):
        ops[name] = op
        runtime = freeze_constant_inputs(model, ins)
        try:
            text, g = compile_graph(model, entry=f"case_{i}", command=f"ONNX node test {name}")
        except UserError as exc:
            msg = str(exc)
            # a deliberate rejection names the operator in one line; an unexpected exception
            # turned into a UserError by ops.guarded is a generator bug, not a rejection
            ok = "\n" not in msg and (op in msg or "operator" in msg) and "by the native backend (" not in msg
            results[name] = ("reject", msg) if ok else ("wrong", f"unclear rejection: {msg!r}")
            continue
        src = tmp_path / f"case_{i}.c"
        src.write_text(text)
        pending.append((name, f"case_{i}", src, runtime, outs, [g.tensors[o].shape for o in g.outputs]))
    lib = ctypes.CDLL(str(build_shared([p[2] for p in pending] + kernel_sources(), [KERNEL_INCLUDE],
                                       cache_dir=tmp_path / "build")))
    for name, entry, _, runtime, want, shapes in pending:
        got = _run(lib, entry, runtime, shapes)
        bad = [f"output {k}: shape {list(gt.shape)} vs {list(w.shape)}" if gt.size != w.size else
               None if np.allclose(gt.reshape(w.shape), w, rtol=RTOL, atol=ATOL) else
               f"output {k}: max abs diff {np.abs(gt.reshape(w.shape) - w).max():.3g}"
               for k, (gt, w) in enumerate(zip(got, want))]
        bad = [b for b in bad if b]
        results[name] = ("wrong", "; ".join(bad)) if bad else ("pass", "")
    return results, ops


def is_float32(model):
    return model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return run_suite(tmp_path_factory.mktemp("onnx_node_tests"))


def test_node_tests_pass_or_are_rejected_in_one_line(suite):
    results, ops = suite
    f32 = {name for name, _, model, _, _ in cases() if is_float32(model)}
    table = defaultdict(lambda: defaultdict(int))
    for name, (kind, _) in results.items():
        table[ops[name]][kind] += 1
    lines = [f"{'operator':<12} {'cases':>5} {'pass':>5} {'reject':>6} {'wrong':>5}"]
    for op in sorted(table):
        t = table[op]
        lines.append(f"{op:<12} {sum(t.values()):>5} {t['pass']:>5} {t['reject']:>6} {t['wrong']:>5}")
    passed = sum(1 for n in f32 if results[n][0] == "pass")
    lines.append(f"float32 cases: {passed} of {len(f32)} pass ({passed / max(1, len(f32)):.1%}); "
                 f"all cases: {sum(1 for r in results.values() if r[0] == 'pass')} of {len(results)}")
    lines += [f"  {kind}: {name}: {detail}" for name, (kind, detail) in sorted(results.items()) if kind != "pass"]
    print("\nONNX node tests through the native f32 generator (host build)\n" + "\n".join(lines))
    wrong = {n: d for n, (k, d) in results.items() if k == "wrong"}
    assert not wrong, wrong
    assert passed >= TARGET * len(f32), f"{passed} of {len(f32)} float32 cases pass (< {TARGET:.0%})"


def test_every_supported_operator_has_cases(suite):
    _, ops = suite
    assert set(ops.values()) == set(SUPPORTED)
