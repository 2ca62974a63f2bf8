"""Checks of a run's sources, outputs' addresses and model artifact before any process starts.

Each check answers in well under a second with one line naming the problem and the fix (a ``UserError``,
exit 2). Without them the same mistakes surfaced only after the pipeline's processes had started and a
stage had failed (10-20 s on a busy 2-core machine), or, for a missing microphone, after a minute of
retries ("Error querying device -1") that never mentioned ``--mic none``. The stages keep their own checks:
these are the fast path for the mistakes a user makes at the command line, not a replacement.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from icfcli import UserError


def check_camera(camera: str) -> None:
    """A camera index needs its /dev/videoN on Linux, a device path must exist; a URL is tried by the stage."""
    if "://" in camera:
        return
    if camera.isdigit():
        if sys.platform.startswith("linux") and os.path.isdir("/dev") and not os.path.exists(f"/dev/video{camera}"):
            raise UserError(f"camera {camera}: there is no /dev/video{camera} (no camera is connected or visible here); "
                            "see `icf-stream devices`, or run a file instead: icf-stream run --video FILE")
        return
    if not Path(camera).exists():
        raise UserError(f"camera {camera} does not exist; give an index, a device path or a URL (see `icf-stream devices`)")


def check_mic(mic: str) -> None:
    """The microphone named by --mic exists as an input device (PortAudio itself is checked by live.import_sounddevice)."""
    from stream.stages.live import import_sounddevice
    from stream.stages.stage import StageError

    try:
        sd = import_sounddevice()
    except StageError as exc:
        raise UserError(str(exc)) from None
    device = None if mic in ("default", "") else (int(mic) if mic.isdigit() else mic)
    try:
        sd.query_devices(device, kind="input")
    except (sd.PortAudioError, ValueError) as exc:
        which = "no default microphone" if device is None else f"microphone {mic!r} is not an input device"
        raise UserError(f"{which} ({exc}); run without one: --mic none (the model hears silence), "
                        "or pick one from `icf-stream devices`") from None


def check_media(path: str, want: str, flag: str) -> None:
    """A local file PyAV opens, with a ``want`` ("video" or "audio") stream whose first frame decodes."""
    if "://" in path and not path.startswith("file://"):
        return  # a network stream is opened by the source (it may not be up yet)
    import av

    try:
        with av.open(path) as box:
            streams = [s for s in box.streams if s.type == want]
            if not streams:
                kinds = ", ".join(sorted({s.type for s in box.streams})) or "none"
                raise UserError(f"{flag} {path} has no {want} stream (it has: {kinds}); give a file with {want} in it")
            for _ in box.decode(streams[0]):
                return
            raise UserError(f"{flag} {path}: its {want} stream holds no frame that decodes; the file is empty or truncated")
    except av.FFmpegError as exc:
        raise UserError(f"{flag} {path} is not a readable {want} file ({exc.__class__.__name__}: "
                        f"{getattr(exc, 'strerror', None) or exc}); it is truncated or not media") from None


def check_publish(address: str | None) -> None:
    """The --publish address binds (then is let go at once, for the sink to bind it)."""
    if not address:
        return
    import zmq

    hint = "give a free local address, e.g. tcp://127.0.0.1:5556 or ipc:///tmp/icf-masks"
    if address.startswith("tcp://"):
        port = address.rpartition(":")[2]
        if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):  # libzmq takes 99999 and binds port 34463
            raise UserError(f"--publish {address}: port {port!r} is not a port (1-65535); {hint}")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind(address)
        sock.unbind(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    except zmq.ZMQError as exc:
        raise UserError(f"--publish {address}: cannot bind it ({exc}); {hint}") from None
    finally:
        sock.close()


def check_artifact(path: str, *, trust_package: bool = False) -> None:
    """An engine artifact's bytes and I/O match its sidecar (a .safetensors checkpoint is checked by its export);
    a .pt2 was built on this machine, unless ``trust_package`` (engine/aoti_trust.py)."""
    from engine import spec

    if Path(path).suffix == ".safetensors":
        return
    try:
        spec.verify_artifact(path, spec.read_sidecar(path))
        if Path(path).suffix == ".pt2":
            from engine.aoti_trust import require_built_here

            require_built_here(path, trust=trust_package)
    except spec.ArtifactError as exc:
        raise UserError(str(exc)) from None
