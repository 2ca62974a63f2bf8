"""What the sink does with a mask: overlay drawing, mask archive (npz), JSONL metrics log and an
on-screen window (only where a display exists); the MP4 recording is stream/stages/recorder.py.

Every file output goes through three names: NAME.partial.EXT (or a hidden temporary) while the
run goes, .NAME.staged once complete, and its own name only when the supervisor commits the run
(``commit_outputs``): a run's files replace the earlier run's together, or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
import zlib
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.log import warn

TINT = np.array([255, 0, 255], np.uint8)  # mask colour (RGB): magenta, far from every SynthAVS colour (green was one)




@lru_cache(maxsize=4)
def _tint(shape: tuple[int, ...]) -> np.ndarray:
    """A frame of the mask colour, made once per frame size (building it costs 1.6 ms at 640x480)."""
    return np.broadcast_to(TINT, shape).copy()


def render_overlay(image: np.ndarray, mask: np.ndarray | None, lines: list[str]) -> np.ndarray:
    """The frame with the mask tinted in, its outline, and text lines top-left. Returns RGB uint8."""
    out = np.array(image, copy=True)
    if mask is not None and mask.any():
        fg = (mask > 0).view(np.uint8) if mask.dtype == np.bool_ else (mask > 0).astype(np.uint8)
        blend = cv2.addWeighted(out, 0.45, _tint(out.shape), 0.55, 0)
        cv2.copyTo(blend, fg, out)  # only where the mask is set
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    if lines:  # text on a darkened band: readable on any background, and after H.264
        band = out[: 10 + 22 * len(lines)]
        band[:] = (band * 0.35).astype(np.uint8)
    y = 22
    for line in lines:
        cv2.putText(out, line, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        y += 22
    return out


def check_output(path: str | Path, inputs: tuple[str | Path | None, ...] = ()) -> str | None:
    """Why ``path`` cannot be an output (None if it can): checked before the run starts, so a bad
    path is not found at the first frame, and an output can never overwrite an input."""
    p = Path(path)
    if p.is_dir():
        return f"output '{p}' is a directory; give a file name"
    for src in inputs:
        if src and p.exists() and Path(src).exists() and os.path.samefile(p, src):
            return f"output '{p}' is the input file '{src}'; writing it would destroy the input"
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder of output '{p}': {exc.strerror or exc}"
    if not os.access(parent, os.W_OK):
        return f"cannot write output '{p}': folder '{parent}' is not writable"
    return None


def partial_path(path: Path) -> Path:
    """Where an output is written while the run goes: overlay.mp4 -> overlay.partial.mp4 (what a
    killed sink leaves: a playable recording, the metrics lines so far)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def staged_path(path: str | Path) -> Path:
    """Where a complete output waits for the run's verdict (``commit_outputs``): .overlay.mp4.staged."""
    path = Path(path)
    return path.with_name(f".{path.name}.staged")


def failed_path(path: str | Path) -> Path:
    """Where a failed run's complete outputs go, beside the earlier run's: overlay.failed.mp4."""
    path = Path(path)
    return path.with_name(f"{path.stem}.failed{path.suffix}")


class OutputError(OSError):
    """An output could not be finished (a full disk, a vanished folder): names the path and the free space."""


def output_error(path: str | Path, exc: BaseException) -> OutputError:
    folder = Path(path).parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free in {folder}"
    except OSError:
        free = f"folder {folder} is not readable"
    why = getattr(exc, "strerror", None) or str(exc)
    return OutputError(f"cannot finish {path}: {why} ({free}); it was not written, earlier outputs are untouched")


def finish_staged(tmp: Path, path: Path, staged: bool) -> None:
    """A complete temporary file becomes the staged output (``staged``: a sink, whose supervisor
    commits the run) or the output itself (a caller on its own). Same folder: an atomic rename."""
    os.replace(tmp, staged_path(path) if staged else path)


def commit_outputs(paths: list[str | Path | None], ok: bool) -> dict[str, str | None]:
    """Moves a run's staged outputs into place together, once the run is over: under their own
    names when it succeeded (replacing an earlier run's), as NAME.failed.EXT when it failed (the
    earlier run's outputs stay untouched). Returns {output: where it is now, or None if the run
    wrote nothing there}."""
    done: dict[str, str | None] = {}
    for path in filter(None, paths):
        staged, dest = staged_path(path), Path(path) if ok else failed_path(path)
        if staged.exists():
            os.replace(staged, dest)
            done[str(path)] = str(dest)
        else:
            done[str(path)] = None
    return done


def sweep_spools(folder: Path) -> None:
    """Removes spools (.NAME.PID-RANDOM.spool) and unfinished archives (.NAME.PID.partial) that a
    killed sink left: their writer's pid is gone."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and name.endswith((".spool", ".partial")):
            pid = name.rsplit(".", 2)[-2].split("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                Path(folder, name).unlink(missing_ok=True)


class _Spool:
    """A temporary file of zlib-compressed uint8 arrays of one shape, written as they come and read
    back one chunk at a time: what it holds costs disk (a few KB per mask), never memory."""

    def __init__(self, folder: Path, name: str) -> None:
        sweep_spools(folder)
        fd, self.path = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}-", suffix=".spool", dir=folder)
        self.file = os.fdopen(fd, "wb")
        self.z = zlib.compressobj(1)
        self.count = 0

    def add(self, array: np.ndarray) -> None:
        self.file.write(self.z.compress(np.ascontiguousarray(array, np.uint8).tobytes()))
        self.count += 1

    def chunks(self, size: int = 1 << 20):
        self.file.write(self.z.flush())
        self.file.close()
        d = zlib.decompressobj()
        with open(self.path, "rb") as f:
            while block := f.read(1 << 16):
                while block:  # masks compress ~100x: bound what one read may expand to
                    yield d.decompress(block, size)
                    block = d.unconsumed_tail
        yield d.flush()

    def remove(self) -> None:
        if not self.file.closed:
            self.file.close()
        Path(self.path).unlink(missing_ok=True)


class MaskStore:
    """Every delivered mask, written as it comes to a compressed spool beside the output, and at
    the end streamed into one npz: masks uint8 [N,H,W], seq, pts_ns, capture_ns (and gt uint8
    [N,H,W] when the source had it). Memory stays flat however long the run (the old store held
    every mask and unpacked them all at shutdown: 4.9 GB after 4 minutes). The npz is written under
    a temporary name and renamed when complete."""

    def __init__(self, path: str | Path, limit: int = 36_000, staged: bool = False) -> None:
        self.path = Path(path)
        self.staged = staged  # close() stages the archive for commit_outputs instead of naming it
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.limit = limit  # 20 min at 30 fps; beyond that masks are counted, not kept
        self.masks = _Spool(self.path.parent, self.path.name)
        self.gt: _Spool | None = None
        self.meta = array("q")  # seq, pts_ns, capture_ns per mask: 24 bytes each
        self.shape: tuple[int, int] | None = None
        self.other_size = 0  # masks of another frame size than the first (an npz holds one size)
        self.over_limit = 0  # masks past ``limit``
        self.gt_missing = False

    def add(self, seq: int, pts_ns: int, capture_ns: int, mask: np.ndarray, gt: np.ndarray | None) -> None:
        if self.shape is None:
            self.shape = mask.shape
        if mask.shape != self.shape:
            self.other_size += 1
            return
        if self.masks.count >= self.limit:
            self.over_limit += 1
            return
        self.masks.add(mask)
        if gt is not None and gt.shape == self.shape and not self.gt_missing:
            if self.gt is None and self.masks.count == 1:
                self.gt = _Spool(self.path.parent, self.path.name + ".gt")
            if self.gt is not None:
                self.gt.add(gt > 0)
        else:
            self.gt_missing = True  # ground truth only when every mask has it
        self.meta.extend((seq, pts_ns, capture_ns))

    def close(self) -> None:
        try:
            if self.masks.count:
                self._write()
        except OSError as exc:  # a full disk: neither the archive nor its temporary file stays
            raise output_error(self.path, exc) from exc
        finally:
            for spool in (self.masks, self.gt):
                if spool is not None:
                    spool.remove()

    def _write(self) -> None:
        n, (h, w) = self.masks.count, self.shape
        meta = np.frombuffer(self.meta, np.int64).reshape(n, 3)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        try:
            self._zip(tmp, n, h, w, meta)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finish_staged(tmp, self.path, self.staged)

    def _zip(self, tmp: Path, n: int, h: int, w: int, meta: np.ndarray) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            members = [("masks", self.masks)] + ([("gt", self.gt)] if self.gt is not None and not self.gt_missing else [])
            for name, spool in members:
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (n, h, w)})
                    for chunk in spool.chunks():
                        f.write(chunk)
            for i, name in enumerate(("seq", "pts_ns", "capture_ns")):
                with zf.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(meta[:, i]))


class MetricsLog:
    """One JSON object per delivered frame (seq, times, per-stage ms, concepts, IoU), then a final
    ``{"summary": ...}`` line. Written as NAME.partial.jsonl, line-buffered, so a crash keeps
    everything written so far there; staged when closed (an earlier run's log is never truncated)."""

    def __init__(self, path: str | Path, staged: bool = False) -> None:
        self.path = Path(path)
        self.staged = staged  # close() stages the log for commit_outputs instead of naming it
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = partial_path(self.path)
        self.file = open(self.partial, "w", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:
            raise output_error(self.path, exc) from exc

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as exc:
            self.partial.unlink(missing_ok=True)
            raise output_error(self.path, exc) from exc
        finish_staged(self.partial, self.path, self.staged)


def display_available() -> str | None:
    """Why a window cannot be shown (None if it can)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY / WAYLAND_DISPLAY unset)"
    info = cv2.getBuildInformation()
    gui = next((ln for ln in info.splitlines() if ln.strip().startswith("GUI:")), "GUI: NONE")
    if "NONE" in gui.upper():
        return "this OpenCV has no GUI support (opencv-python-headless); install opencv-python for a window"
    return None


class Display:
    """An OpenCV window showing the overlay; 'q' or Esc asks the pipeline to stop."""

    def __init__(self, title: str = "icf-stream") -> None:
        self.title = title
        self.ok = True

    def show(self, overlay_rgb: np.ndarray) -> bool:
        """False when the user asked to quit."""
        if not self.ok:
            return True
        try:
            cv2.imshow(self.title, cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR))
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            warn(f"display failed ({exc}); continuing without a window")
            self.ok = False
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self.ok:
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
