"""GPU check of the plugin object itself, without TensorRT: numerics and batch consistency.

Runs the C++ harness (tools/dcnv2Harness.cpp, built with -DDCN_BUILD_HARNESS=ON) on inputs
made here with torch, and compares what the plugin wrote with the float64 reference written
from the math (dcn_ext/reference.py), for fp32, fp16 and bf16, at batch 3 and for each image
of that batch alone (which must agree with the batch within the same tolerance: a batch
may split K differently, so its fp32 sums may be formed in another order). The
channels-last cases offer x and y in kHWC8 (fp16, bf16) / kHWC (fp32): the plugin must take
them where the kernels read channels-last in place, with the same numbers as NCHW, and
decline them where they cannot (grouped convolution, channel counts off the K step).
The kept-weights cases run with the plugin's keep-packed-weights variable
(contract.json's plugin_keep_packed_weights_env) unset and at 1, zeroing the weight buffer
in place between two enqueues of each problem: at 1 the outputs keep the first enqueue's
bits (and equal the default run's), unset the second output is the bias alone; with the
first enqueue captured into a CUDA graph, the plugin packs inside the graph, warns once and
gives the default bits; a value other than 0 or 1 must fail the plugin's creation, naming
the variable and the value.

    python trt_plugin/tools/gpu_check.py --build BUILD_DIR --work DIR [--json OUT.json]
        [--sanitizer]

--sanitizer also runs compute-sanitizer (memcheck, initcheck) over small cases, one of them
with the packed weights kept. Exit status
0 when every case is within tolerance, batch-consistent and sanitizer-clean.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dcn_ext.contract import CONTRACT  # noqa: E402
from dcn_ext.reference import modulated_deform_conv2d_reference  # noqa: E402

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Max |plugin - reference| allowed, relative to max |reference| of the case. fp32 keeps
# fp32 accumulation; fp16/bf16 round the inputs (the reference sees the same rounded
# inputs) and the output, so their bound is a few output ulps.
TOLERANCE = {"float32": 2e-5, "float16": 4e-3, "bfloat16": 2.5e-2}


@dataclass(frozen=True)
class Case:
    name: str
    channels: int
    out_channels: int
    height: int
    width: int
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    deformable_group: int
    bias: bool
    offset_scale: float


CASES = [
    # CenterNet's DCN layers: 3x3, stride 1, padding 1 (DLA-34 up-path and ResNet-DCN heads).
    Case("centernet_3x3", 64, 64, 24, 20, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, 2.0),
    # Everything non-default at once: pairs that differ per axis, groups, dg, no bias,
    # offsets big enough to leave the image.
    Case("mixed_no_bias", 12, 6, 13, 17, (3, 2), (2, 1), (1, 0), (2, 1), 3, 2, False, 6.0),
    # Wider channels (the implicit-GEMM path where the kernel header takes it).
    Case("wide_128", 128, 128, 16, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, 1.5),
    # 64 channels and, at batch 3, one wave of 128-pixel tiles: the register-A kernel on an
    # H100 (fp16, bf16), its weight image packed into the workspace at every enqueue.
    Case("centernet_64_wave", 64, 64, 96, 56, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, 2.0),
]
SANITIZER_CASES = [
    Case("sanitize_small", 8, 8, 7, 9, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, 3.0),
    Case("sanitize_grouped", 8, 4, 9, 6, (3, 3), (2, 2), (1, 1), (1, 1), 2, 2, False, 3.0),
    Case("sanitize_wide", 64, 64, 12, 10, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, 2.0),
]
# (case, whether the plugin takes x and y channels-last for it)
CHANNELS_LAST_CASES = [(CASES[0], True), (CASES[2], True), (CASES[3], True), (CASES[1], False)]
BATCH = 3
# The batch outputs by (case, dtype, layout): a channels-last run must give the NCHW bits.
BATCH_OUTPUTS: Dict[Tuple[str, str, str], torch.Tensor] = {}


def field_specs(case: Case) -> Dict[str, str]:
    values = {
        "stride": case.stride,
        "padding": case.padding,
        "dilation": case.dilation,
        "groups": (case.groups,),
        "deformable_group": (case.deformable_group,),
    }
    missing = set(CONTRACT.attributes) - set(values)
    if missing:
        raise SystemExit(f"contract attributes this check does not fill: {sorted(missing)}")
    return {name: ",".join(str(v) for v in values[name]) for name in CONTRACT.attributes}


def make_inputs(case: Case, dtype: torch.dtype, seed: int) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    kh, kw = case.kernel
    out_h = (case.height + 2 * case.padding[0] - (case.dilation[0] * (kh - 1) + 1)) // case.stride[0] + 1
    out_w = (case.width + 2 * case.padding[1] - (case.dilation[1] * (kw - 1) + 1)) // case.stride[1] + 1
    taps = kh * kw * case.deformable_group
    names = CONTRACT.inputs
    tensors = {
        names[0]: torch.randn(BATCH, case.channels, case.height, case.width, generator=g),
        names[1]: torch.randn(BATCH, 2 * taps, out_h, out_w, generator=g) * case.offset_scale,
        names[2]: torch.rand(BATCH, taps, out_h, out_w, generator=g),
        names[3]: torch.randn(case.out_channels, case.channels // case.groups, kh, kw, generator=g)
        / (case.channels * kh * kw / case.groups) ** 0.5,
    }
    if case.bias:
        tensors[names[4]] = torch.randn(case.out_channels, generator=g)
    # Round once to the run's dtype: the plugin and the reference see the same numbers.
    return {k: v.to(dtype) for k, v in tensors.items()}


def raw_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""


def from_raw(data: bytes, dtype: torch.dtype, shape: Sequence[int]) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(*shape)


def write_case(directory: Path, case: Case, dtype_name: str, inputs: Dict[str, torch.Tensor],
               channels_last: bool = False) -> List[str]:
    """Writes case.txt and the raw inputs; problems: the batch, then each image alone.
    channels_last: x's bytes in [N][H][W][C] order (the shapes stay NCHW, as TensorRT's)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"dtype {dtype_name}", f"layout {'channels_last' if channels_last else 'nchw'}"]
    lines += [f"field {name}={value}" for name, value in field_specs(case).items()]
    problems = [("batch", slice(0, BATCH))] + [(f"image{i}", slice(i, i + 1)) for i in range(BATCH)]
    batched = set(CONTRACT.inputs[:3])  # input, offset, mask carry the batch dim
    for problem, rows in problems:
        lines.append(f"problem {problem}")
        for name, tensor in inputs.items():
            part = tensor[rows] if name in batched else tensor
            lines.append(f"input {name} " + " ".join(str(d) for d in part.shape))
            stored = part.permute(0, 2, 3, 1) if channels_last and name == CONTRACT.inputs[0] else part
            (directory / f"{problem}.{name}.bin").write_bytes(raw_bytes(stored))
    (directory / "case.txt").write_text("\n".join(lines) + "\n")
    return [p for p, _ in problems]


def plugin_environment(keep_packed_weights: Optional[str]) -> Dict[str, str]:
    """This process's environment with the plugin's keep-packed-weights variable set to the
    value given, or removed (None)."""
    env = dict(os.environ)
    env.pop(CONTRACT.plugin_keep_packed_weights_env, None)
    if keep_packed_weights is not None:
        env[CONTRACT.plugin_keep_packed_weights_env] = keep_packed_weights
    return env


def run_harness(harness: Path, library: Path, directory: Path, sanitizer: Optional[str] = None,
                keep_packed_weights: Optional[str] = None) -> dict:
    command = [str(harness), "run", str(library), str(directory)]
    if sanitizer:
        command = ["compute-sanitizer", f"--tool={sanitizer}", "--error-exitcode=9"] + command
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=plugin_environment(keep_packed_weights))
    result = {"returncode": done.returncode, "seconds": round(time.perf_counter() - started, 2)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result["harness"] = json.loads(lines[-1]) if lines else None
    if done.returncode != 0:
        text = done.stdout + done.stderr
        # the head holds a sanitizer's first report, the tail the harness's verdict
        result["stderr_tail"] = text if len(text) <= 6000 else text[:4000] + "\n[...]\n" + text[-2000:]
    elif sanitizer:
        summary = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR SUMMARY" in line]
        result["sanitizer_summary"] = summary[-1].strip() if summary else "(no summary line)"
    return result


def check_case(harness: Path, library: Path, work: Path, case: Case, dtype_name: str, seed: int,
               channels_last: bool = False, expect_accept: bool = True) -> dict:
    dtype = DTYPES[dtype_name]
    inputs = make_inputs(case, dtype, seed)
    layout = "channels_last" if channels_last else "nchw"
    directory = work / f"{case.name}_{dtype_name}_{layout}"
    problems = write_case(directory, case, dtype_name, inputs, channels_last)
    run = run_harness(harness, library, directory)
    report = {"case": case.name, "dtype": dtype_name, "layout": layout, "returncode": run["returncode"]}
    if not expect_accept:  # x (position 0) declined, nothing run, nothing logged as an error
        verdict = run["harness"] or {}
        report["declined"] = verdict.get("declined_format_position") == 0 and not verdict.get("errors")
        report["ok"] = run["returncode"] == 1 and report["declined"]
        if not report["ok"]:
            report["failure"] = run
        return report
    if run["returncode"] != 0 or not run["harness"] or not run["harness"]["ok"]:
        report["ok"] = False
        report["failure"] = run
        return report
    names = CONTRACT.inputs
    reference = modulated_deform_conv2d_reference(
        inputs[names[0]], inputs[names[1]], inputs[names[2]], inputs[names[3]],
        inputs.get(names[4]) if case.bias else None,
        stride=case.stride, padding=case.padding, dilation=case.dilation,
        groups=case.groups, deformable_groups=case.deformable_group)
    shapes = {p["name"]: p["output_shape"] for p in run["harness"]["problems"]}
    outputs = {p: from_raw((directory / f"{p}.output.bin").read_bytes(), dtype,
                           [shapes[p][i] for i in ((0, 2, 3, 1) if channels_last else range(4))])
               for p in problems}
    if channels_last:  # [N][Ho][Wo][Cout] back to NCHW for the comparison
        outputs = {p: out.permute(0, 3, 1, 2) for p, out in outputs.items()}
    batch_out = outputs["batch"]
    BATCH_OUTPUTS[(case.name, dtype_name, layout)] = batch_out
    scale = reference.abs().max().item()
    error = (batch_out.double() - reference).abs().max().item()
    per_image = [(outputs[f"image{i}"].double() - batch_out[i:i + 1].double()).abs().max().item()
                 for i in range(BATCH)]
    # Nothing in the kernels mixes images, but a batch may split K differently from one
    # image (the split is chosen per launch): each image agrees with the batch within the
    # tolerance, and is often bit-identical.
    bitwise = all(torch.equal(outputs[f"image{i}"], batch_out[i:i + 1]) for i in range(BATCH))
    consistent = max(per_image) <= TOLERANCE[dtype_name] * (scale if scale else 1.0)
    report.update({
        "output_shape": list(batch_out.shape),
        "expected_shape": list(reference.shape),
        "max_abs_error": error,
        "max_abs_reference": scale,
        "relative_error": error / scale if scale else error,
        "tolerance": TOLERANCE[dtype_name],
        "batch_vs_single_max_diff": max(per_image),
        "batch_vs_single_equal": bitwise,
        "batch_vs_single_consistent": consistent,
        "finite": bool(torch.isfinite(batch_out.double()).all()),
        "workspace_bytes": run["harness"].get("workspace_bytes"),
        "seconds": run["seconds"],
    })
    report["ok"] = (list(batch_out.shape) == list(reference.shape) and report["finite"]
                    and report["relative_error"] <= TOLERANCE[dtype_name] and consistent)
    return report


def read_outputs(directory: Path, run: dict, dtype: torch.dtype, suffix: str,
                 channels_last: bool) -> Dict[str, torch.Tensor]:
    """The problems' raw outputs (DIR/<problem>.<suffix>.bin) as the harness wrote them:
    [N][C][H][W], or [N][H][W][C] channels-last."""
    outputs = {}
    for problem in run["harness"]["problems"]:
        n, c, h, w = problem["output_shape"]
        data = (directory / f"{problem['name']}.{suffix}.bin").read_bytes()
        outputs[problem["name"]] = from_raw(data, dtype, (n, h, w, c) if channels_last else (n, c, h, w))
    return outputs


def check_kept_weights(harness: Path, library: Path, work: Path, case: Case, dtype_name: str, seed: int,
                       channels_last: bool) -> dict:
    """The plugin's kept packed weights (contract.plugin_keep_packed_weights_env): every
    problem is enqueued, then its weight buffer zeroed in place and enqueued again. Packing on
    every enqueue (the variable unset), the second output is the bias alone; with the variable
    at 1, the first output's bits again (the weights packed at the first enqueue were kept),
    and the first outputs are those of the default run, bit for bit."""
    dtype = DTYPES[dtype_name]
    inputs = make_inputs(case, dtype, seed)
    layout = "channels_last" if channels_last else "nchw"
    directory = work / f"kept_{case.name}_{dtype_name}_{layout}"
    write_case(directory, case, dtype_name, inputs, channels_last)
    with open(directory / "case.txt", "a") as spec:
        spec.write(f"again_with_zero_input {CONTRACT.inputs[3]}\n")
    report = {"case": case.name, "dtype": dtype_name, "layout": layout}
    first, again = {}, {}
    for setting in (None, "1"):  # each run rewrites the files: read them before the next
        run = run_harness(harness, library, directory, keep_packed_weights=setting)
        if run["returncode"] != 0 or not run["harness"] or not run["harness"]["ok"]:
            report.update(ok=False, setting=setting, failure=run)
            return report
        first[setting] = read_outputs(directory, run, dtype, "output", channels_last)
        again[setting] = read_outputs(directory, run, dtype, "output_again", channels_last)
    bias = inputs[CONTRACT.inputs[4]].reshape((1, 1, 1, -1) if channels_last else (1, -1, 1, 1))
    report["same_as_default"] = all(torch.equal(first["1"][p], first[None][p]) for p in first[None])
    report["kept_after_zeroing"] = all(torch.equal(again["1"][p], first["1"][p]) for p in first["1"])
    report["repacked_after_zeroing"] = all(torch.equal(out, bias.expand_as(out)) for out in again[None].values())
    report["ok"] = report["same_as_default"] and report["kept_after_zeroing"] and report["repacked_after_zeroing"]
    return report


def check_capture_without_warmup(harness: Path, library: Path, work: Path, case: Case, dtype_name: str,
                                 seed: int) -> dict:
    """With the variable at 1 and each problem's first enqueue captured into a CUDA graph
    (nothing packed before: no allocation may be captured), the plugin packs inside the graph
    as without the setting, warns once, and gives the default run's bits."""
    dtype = DTYPES[dtype_name]
    directory = work / f"kept_capture_{case.name}_{dtype_name}"
    write_case(directory, case, dtype_name, make_inputs(case, dtype, seed))
    default = run_harness(harness, library, directory)
    with open(directory / "case.txt", "a") as spec:
        spec.write("capture_first\n")
    captured = run_harness(harness, library, directory, keep_packed_weights="1")
    report = {"case": case.name, "dtype": dtype_name, "layout": "nchw"}
    if any(r["returncode"] != 0 or not r["harness"] or not r["harness"]["ok"] for r in (default, captured)):
        report.update(ok=False, failure={"default": default, "captured": captured})
        return report
    # captured's files replaced default's: the default outputs again, from a fresh run
    first = read_outputs(directory, captured, dtype, "output", False)
    (directory / "case.txt").write_text((directory / "case.txt").read_text().replace("capture_first\n", ""))
    default = run_harness(harness, library, directory)
    expected = read_outputs(directory, default, dtype, "output", False)
    warnings = sum("were not packed before this CUDA-graph capture" in w for w in captured["harness"]["warnings"])
    report.update(same_as_default=all(torch.equal(first[p], expected[p]) for p in expected), warnings=warnings)
    report["ok"] = report["same_as_default"] and warnings == 1
    return report


def check_bad_keep_setting(harness: Path, library: Path, work: Path) -> dict:
    """A value of the variable other than 0 or 1 fails the plugin's creation, naming both."""
    directory = work / "kept_bad_setting"
    write_case(directory, CASES[0], "float32", make_inputs(CASES[0], torch.float32, 0))
    run = run_harness(harness, library, directory, keep_packed_weights="yes")
    text = run.get("stderr_tail") or ""
    named = CONTRACT.plugin_keep_packed_weights_env in text and "'yes'" in text
    return {"case": "bad_keep_setting", "returncode": run["returncode"], "named": named,
            "ok": run["returncode"] == 1 and named, **({} if named else {"failure": run})}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True, help="CMake build dir with the plugin and harness")
    parser.add_argument("--work", type=Path, required=True, help="scratch directory for raw tensors")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--sanitizer", action="store_true", help="also run compute-sanitizer")
    args = parser.parse_args(argv)
    library = args.build / "libdcn_trt_plugin.so"
    harness = args.build / "dcnv2_harness"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    reports = []
    for index, case in enumerate(CASES):
        for dtype_name in DTYPES:
            reports.append(check_case(harness, library, args.work, case, dtype_name, seed=index))
            r = reports[-1]
            if r["ok"]:
                print(f"{case.name:16s} {dtype_name:9s} max_err {r['max_abs_error']:.3e} "
                      f"(rel {r['relative_error']:.2e} <= {r['tolerance']:.1e}) "
                      f"batch==single {r['batch_vs_single_equal']} ws {r['workspace_bytes']}")
            else:
                print(f"{case.name:16s} {dtype_name:9s} FAILED: {json.dumps(r)[:2000]}")
    for case, accept in CHANNELS_LAST_CASES:
        for dtype_name in DTYPES:
            # the NCHW run's seed: same inputs, so the same bits are expected
            reports.append(check_case(harness, library, args.work, case, dtype_name, seed=CASES.index(case),
                                      channels_last=True, expect_accept=accept))
            r = reports[-1]
            if accept and r["ok"]:
                nchw = BATCH_OUTPUTS.get((case.name, dtype_name, "nchw"))
                r["same_as_nchw"] = nchw is not None and torch.equal(BATCH_OUTPUTS[(case.name, dtype_name, "channels_last")], nchw)
                r["ok"] = r["same_as_nchw"]
            if not r["ok"]:
                print(f"{case.name:16s} {dtype_name:9s} channels-last FAILED: {json.dumps(r)[:2000]}")
            elif not accept:
                print(f"{case.name:16s} {dtype_name:9s} channels-last declined, as expected")
            else:
                print(f"{case.name:16s} {dtype_name:9s} channels-last max_err {r['max_abs_error']:.3e} "
                      f"(rel {r['relative_error']:.2e} <= {r['tolerance']:.1e}) same bits as NCHW "
                      f"batch==single {r['batch_vs_single_equal']} ws {r['workspace_bytes']}")
    # Kept packed weights: 64 channels (the register-A kernel's image at batch 3 on an H100),
    # 128 channels split K (kept counters), and a 3x3 case, NCHW and channels-last.
    for case, channels_last in ((CASES[3], True), (CASES[2], False), (CASES[0], True)):
        for dtype_name in DTYPES:
            reports.append(check_kept_weights(harness, library, args.work, case, dtype_name, CASES.index(case),
                                              channels_last))
            r = reports[-1]
            print(f"{case.name:16s} {dtype_name:9s} kept weights ({r.get('layout')}): "
                  + ("same bits as packing each call, kept after zeroing, repacked without the setting"
                     if r["ok"] else f"FAILED: {json.dumps(r, default=str)[:2000]}"))
    for dtype_name in DTYPES:
        reports.append(check_capture_without_warmup(harness, library, args.work, CASES[2], dtype_name, 2))
        r = reports[-1]
        print(f"{CASES[2].name:16s} {dtype_name:9s} kept weights, first enqueue captured: "
              + ("packed in the graph, default bits, warned once" if r["ok"]
                 else f"FAILED: {json.dumps(r, default=str)[:2000]}"))
    reports.append(check_bad_keep_setting(harness, library, args.work))
    print(f"bad keep setting: {'refused, naming the variable and the value' if reports[-1]['ok'] else 'FAILED: ' + json.dumps(reports[-1], default=str)[:2000]}")
    sanitizer = []
    if args.sanitizer:
        # sanitize_wide (64 channels) also channels-last, and with the packed weights kept
        runs = [(case, False, None) for case in SANITIZER_CASES] + [(SANITIZER_CASES[2], True, None),
                                                                      (SANITIZER_CASES[2], True, "1")]
        for index, (case, channels_last, keep) in enumerate(runs):
            for dtype_name in DTYPES:
                name = case.name + ("_channels_last" if channels_last else "") + ("_kept" if keep else "")
                directory = args.work / f"{name}_{dtype_name}"
                write_case(directory, case, dtype_name, make_inputs(case, DTYPES[dtype_name], 100 + index),
                           channels_last)
                for tool in ("memcheck", "initcheck"):
                    run = run_harness(harness, library, directory, sanitizer=tool, keep_packed_weights=keep)
                    entry = {"case": name, "dtype": dtype_name,
                             "tool": tool,
                             "returncode": run["returncode"],
                             "summary": run.get("sanitizer_summary"),
                             "ok": run["returncode"] == 0}
                    if run["returncode"] != 0:
                        entry["tail"] = run.get("stderr_tail")
                    sanitizer.append(entry)
                    print(f"sanitizer {tool:9s} {entry['case']:28s} {dtype_name:8s} rc={run['returncode']} "
                          f"{entry['summary'] or entry.get('tail', '')[-400:]}")
    ok = all(r["ok"] for r in reports) and all(s["ok"] for s in sanitizer)
    summary = {"device": device, "torch": torch.__version__, "ok": ok, "cases": reports, "sanitizer": sanitizer}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(f"device: {device}; {'ALL OK' if ok else 'FAILURES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
