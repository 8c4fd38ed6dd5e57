"""The whole pipeline, offline, on the built-in CenterNet miniature.

``run_demo(workdir)`` creates the miniature as a git repository, clones it the way
``apply`` clones the official upstream, then runs apply -> build -> export (random
weights) -> verify. Each stage is the real core function of its module; a stage whose
module does not exist yet is reported as such, never simulated. Stage failures are
recorded in the returned :class:`DemoReport` (the summary is the point of the demo);
only an unusable work directory raises.

Everything is written under ``workdir``: ``upstream/`` (the miniature), ``CenterNet/``
(the clone that gets patched and built) and ``out/`` (the ONNX model and its metadata).
"""
from __future__ import annotations

import importlib
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from patcher.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, CenterNetPatchError, UsageError
from patcher.progress import NULL_SINK, ProgressSink

DEFAULT_WORKDIR = Path("centernet-demo")
DEFAULT_TASK = "ddd"
# A file that says "this directory was made by `centernet-patch demo`": only such a
# directory is ever emptied by a later demo run.
WORKDIR_MARKER = ".centernet-demo"
STAGES = ("miniature", "clone", "apply", "build", "export", "verify")

PASSED, FAILED, NOT_DELIVERED, SKIPPED = "passed", "FAILED", "not delivered yet", "skipped"


class NotDelivered(Exception):
    """A stage's module or function does not exist yet."""


@dataclass
class StageOutcome:
    name: str
    status: str  # PASSED, FAILED, NOT_DELIVERED or SKIPPED
    detail: str
    exit_code: int = 0  # for FAILED: the exit code the error maps to
    traceback: str = ""  # for FAILED by an unexpected exception


@dataclass
class HeadError:
    name: str
    max_abs: float
    max_rel: float
    tolerance: str
    passed: bool


@dataclass
class DemoReport:
    workdir: Path
    task: str
    stages: List[StageOutcome] = field(default_factory=list)
    heads: List[HeadError] = field(default_factory=list)
    detections_match: Optional[bool] = None
    outputs: Dict[str, Path] = field(default_factory=dict)  # what -> where

    def stage(self, name: str) -> StageOutcome:
        return next(s for s in self.stages if s.name == name)

    @property
    def failed(self) -> List[StageOutcome]:
        return [s for s in self.stages if s.status == FAILED]

    @property
    def exit_code(self) -> int:
        """0 unless a stage really failed (undelivered stages are not failures)."""
        return self.failed[0].exit_code if self.failed else 0


def _core(module: str, function: str) -> Callable[..., Any]:
    """``patcher.<module>.<function>``, or NotDelivered when that does not exist yet."""
    qualified = f"patcher.{module}"
    try:
        loaded = importlib.import_module(qualified)
    except ModuleNotFoundError as error:
        if error.name == qualified:
            raise NotDelivered(f"{qualified} does not exist yet") from None
        raise
    found = getattr(loaded, function, None)
    if found is None:
        raise NotDelivered(f"{qualified}.{function} does not exist yet")
    return found


def prepare_workdir(workdir: Path) -> Path:
    """Make ``workdir`` an empty demo directory; only a previous demo's is ever emptied."""
    workdir = Path(workdir).expanduser().absolute()
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"demo work directory {workdir} exists and is not a directory",
                         tip="pass another path with --workdir")
    if workdir.is_dir() and any(workdir.iterdir()):
        if not (workdir / WORKDIR_MARKER).is_file():
            raise UsageError(
                f"demo work directory {workdir} is not empty and was not made by "
                f"`centernet-patch demo` (no {WORKDIR_MARKER} file); refusing to touch it",
                tip="pass a new or empty directory with --workdir")
        for child in workdir.iterdir():  # a previous demo's output: start afresh
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / WORKDIR_MARKER).write_text(
        "made by `centernet-patch demo`; a later demo run empties this directory\n")
    return workdir


def _describe(value: Any) -> str:
    """A short line for a core's report object (its summary when it has one)."""
    for attribute in ("summary", "detail", "describe"):
        found = getattr(value, attribute, None)
        if callable(found):
            found = found()
        if isinstance(found, str) and found:
            return found
    return ""


def _tolerance_text(tolerance: Any) -> str:
    if hasattr(tolerance, "atol") and hasattr(tolerance, "rtol"):
        return f"atol {tolerance.atol:g} + rtol {tolerance.rtol:g}"
    return str(tolerance)


def _short_list(items: List[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


class _Pipeline:
    """Runs the stages in order; a stage runs only when the stages it needs passed."""

    def __init__(self, report: DemoReport, sink: ProgressSink) -> None:
        self.report = report
        self.sink = sink

    def run(self, name: str, needs: List[str], body: Callable[[], str]) -> bool:
        blocked = [s for s in self.report.stages if s.name in needs and s.status != PASSED]
        if blocked:
            first = blocked[0]
            self.report.stages.append(StageOutcome(
                name, SKIPPED, f"needs {first.name} ({first.status})"))
            return False
        try:
            detail = body()
        except NotDelivered as missing:
            self.report.stages.append(StageOutcome(name, NOT_DELIVERED, str(missing)))
            return False
        except CenterNetPatchError as error:
            detail = str(error) + (f" (tip: {error.tip})" if error.tip else "")
            self.report.stages.append(StageOutcome(name, FAILED, detail, error.exit_code))
            return False
        except Exception as error:  # a bug in a stage: recorded with its traceback
            self.report.stages.append(StageOutcome(
                name, FAILED, f"internal error: {type(error).__name__}: {error}",
                EXIT_INTERNAL, traceback.format_exc()))
            return False
        self.report.stages.append(StageOutcome(name, PASSED, detail))
        return True


def run_demo(workdir: Path = DEFAULT_WORKDIR, *, task: str = DEFAULT_TASK,
             sink: ProgressSink = NULL_SINK) -> DemoReport:
    """Miniature -> clone -> apply -> build -> export ``task`` -> verify, in ``workdir``."""
    workdir = prepare_workdir(workdir)
    report = DemoReport(workdir=workdir, task=task)
    pipeline = _Pipeline(report, sink)
    state: Dict[str, Any] = {}

    def miniature() -> str:
        create_miniature = _core("miniature", "create_miniature")
        with sink.step("Creating the CenterNet miniature"):
            state["upstream"] = Path(create_miniature(workdir / "upstream"))
        report.outputs["miniature upstream"] = state["upstream"]
        return f"git repository at {state['upstream']}"

    def clone() -> str:
        from patcher.clone import _load_git, locate_or_clone

        upstream: Path = state["upstream"]
        head = _load_git().Repo(upstream).head.commit.hexsha
        result = locate_or_clone(workdir / "CenterNet", upstream=upstream.as_uri(), ref=head,
                                 sink=sink)
        state["tree"] = result.path
        report.outputs["CenterNet clone"] = result.path
        return f"{upstream.as_uri()} at {result.commit[:12]}"

    def apply() -> str:
        apply_core = _core("apply", "apply")
        result = apply_core(state["tree"], sink=sink)
        changed = [str(path) for path in getattr(result, "changed_files", [])]
        if getattr(result, "already_applied", False):
            return "already applied"
        return f"{len(changed)} files patched: {_short_list(changed)}"

    def build() -> str:
        build_core = _core("build", "build")
        result = build_core(state["tree"], sink=sink)
        return _describe(result) or "built"

    def export() -> str:
        export_core = _core("export", "export")
        out_dir = workdir / "out"
        out_dir.mkdir(exist_ok=True)
        result = export_core(state["tree"], task, random_weights=True, out=out_dir, sink=sink)
        state["onnx"] = Path(result.onnx_path)
        report.outputs["ONNX model"] = state["onnx"]
        metadata_path = getattr(result, "metadata_path", None)
        if metadata_path:
            report.outputs["ONNX metadata"] = Path(metadata_path)
        return f"{result.dcn_node_count} DCN nodes, {state['onnx'].name}"

    def verify() -> str:
        verify_core = _core("verify", "verify")
        result = verify_core(state["onnx"], tree=state["tree"], sink=sink)
        report.heads = [HeadError(h.name, float(h.max_abs), float(h.max_rel),
                                  _tolerance_text(h.tolerance), bool(h.passed))
                        for h in result.heads]
        if getattr(result, "report_path", None):
            report.outputs["verification report"] = Path(result.report_path)
        report.detections_match = getattr(result, "detections_match", None)
        worst = max(report.heads, key=lambda h: h.max_abs, default=None)
        detail = (f"{sum(h.passed for h in report.heads)}/{len(report.heads)} heads within "
                  f"tolerance" + (f", worst {worst.name} {worst.max_abs:.2e}" if worst else ""))
        if report.detections_match is not None:
            detail += ", detections " + ("match" if report.detections_match else "DIFFER")
        if not result.passed:
            from patcher.errors import VerificationFailed

            raise VerificationFailed(f"ONNX and PyTorch disagree: {detail}")
        return detail

    pipeline.run("miniature", [], miniature)
    pipeline.run("clone", ["miniature"], clone)
    pipeline.run("apply", ["clone"], apply)
    pipeline.run("build", ["apply"], build)
    pipeline.run("export", ["apply", "build"], export)
    pipeline.run("verify", ["export"], verify)
    return report


__all__ = ["run_demo", "DemoReport", "StageOutcome", "HeadError", "prepare_workdir",
           "DEFAULT_WORKDIR", "DEFAULT_TASK", "STAGES", "PASSED", "FAILED", "NOT_DELIVERED",
           "SKIPPED", "EXIT_CHECK_FAILED"]
