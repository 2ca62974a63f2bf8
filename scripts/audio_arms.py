"""Audio arms on real recordings (issue 20 item 3): a nearest-class-mean probe over tuxpaint's recordings.

    PYTHONPATH=. .venv/bin/python scripts/audio_arms.py prepare /tmp/arms
    for c in clean snr10 gain-20; do /tmp/aisfxenv/bin/python scripts/aisfx_reference.py /tmp/arms/w16_$c.npz /tmp/arms/ref16_$c.npz librosa; done
    for c in clean snr10; do /tmp/aisfxenv/bin/python scripts/aisfx_reference.py /tmp/arms/w44_$c.npz /tmp/arms/ref44_$c.npz librosa; done
    /tmp/aisfxenv-ess/bin/python scripts/aisfx_reference.py /tmp/arms/w16_clean.npz /tmp/arms/ess16_clean.npz essentia
    PYTHONPATH=. .venv/bin/python scripts/audio_arms.py probe /tmp/arms docs/results/audio_arms

Recordings: /usr/share/tuxpaint/stamps/**/NAME.ogg without *_desc*, symbols/ and town/ (package
tuxpaint-stamps-default), decoded with PyAV, mono, peak-normalised per recording, resampled to 16 kHz
(and to 44.1 kHz for the full-band reference), cut into non-overlapping 15,600-sample windows (0.975 s;
a shorter recording is one zero-padded window). Conditions of the probed (test) windows: clean, white
noise at 10 dB SNR (per window), and a -20 dB gain (a quiet microphone). Centroids always come from
clean windows.

Probes (cosine nearest class mean after removing the training mean; also "matched": centroids from the
same condition as the test windows, the analogue of training with that augmentation):
- windows: each recording is a class; its first half of windows train, the rest test (recordings with
  >= 2 windows): does the embedding recognise the same source later in its recording?
- recordings: 5 categories (mammal, bird, insect, instrument, household); leave one recording out:
  does it put a recording it never saw in the right category? Balanced accuracy (chance 20%).

Arms: VGGish log-mel statistics (mean and std per band, the current front end with nothing learnt);
the shipped icf-lite-synthavs audio token (VGGish-shaped encoder trained on synthetic tones); aisfx's
CNN on our in-graph 16 kHz front end (model/aisfx_logmel.py, raw level); aisfx's CNN on aisfx's own
librosa front end of the same 16 kHz windows (peak-normalised per window, as aisfx does per file); and
on the full-band 44.1 kHz windows (what the 16 kHz step contract gives up).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

STAMPS = Path("/usr/share/tuxpaint/stamps")
WINDOW = 15_600
CATEGORIES = {"animals/mammals": "mammal", "animals/marsupials": "mammal", "animals/birds": "bird", "animals/insects": "insect",
              "hobbies/music": "instrument", "household": "household"}
CONDITIONS = ("clean", "snr10", "gain-20")


def recordings() -> list[Path]:
    found = [p for p in sorted(STAMPS.rglob("*.ogg")) if "_desc" not in p.name and p.relative_to(STAMPS).parts[0] not in ("symbols", "town")]
    if not found:
        raise SystemExit("no tuxpaint recordings: apt-get install tuxpaint-stamps-default")
    return found


def category(path: Path) -> str:
    rel = path.relative_to(STAMPS).as_posix()
    return next((c for prefix, c in CATEGORIES.items() if rel.startswith(prefix + "/")), "")


def decode(path: Path, rate: int) -> np.ndarray:
    import av

    with av.open(str(path)) as box:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [f.to_ndarray().reshape(-1) for frame in box.decode(audio=0) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def prepare(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    meta, w16, w44 = [], [], []
    n44 = int(np.ceil(WINDOW * 44100 / 16000))
    for path in recordings():
        a16, a44 = decode(path, 16000), decode(path, 44100)
        peak = max(float(np.abs(a16).max()), 1e-6)
        a16, a44 = a16 / peak, a44 / peak
        count = max(1, len(a16) // WINDOW)
        for j in range(count):
            s16, s44 = j * WINDOW, int(round(j * WINDOW * 44100 / 16000))
            w16.append(np.pad(a16[s16 : s16 + WINDOW], (0, max(0, s16 + WINDOW - len(a16)))))
            w44.append(np.pad(a44[s44 : s44 + n44], (0, max(0, s44 + n44 - len(a44))))[:n44])
            meta.append({"recording": path.relative_to(STAMPS).as_posix(), "category": category(path), "window": j, "windows": count})
    w16, w44 = np.stack(w16), np.stack(w44)

    def noisy(w: np.ndarray) -> np.ndarray:
        power = np.mean(w**2, axis=1, keepdims=True)
        return (w + rng.standard_normal(w.shape) * np.sqrt(power / 10.0)).astype(np.float32)

    sets16 = {"clean": w16, "snr10": noisy(w16), "gain-20": w16 * 0.1}
    sets44 = {"clean": w44, "snr10": noisy(w44)}
    for c, w in sets16.items():
        np.savez(out / f"w16_{c}.npz", audio=w.astype(np.float32), rate=16000)
    for c, w in sets44.items():
        np.savez(out / f"w44_{c}.npz", audio=w.astype(np.float32), rate=44100)
    (out / "meta.json").write_text(json.dumps(meta))
    print(f"{len(meta)} windows from {len({m['recording'] for m in meta})} recordings -> {out}")


def embed_arms(out: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    import torch

    import model
    from model.aisfx_logmel import AisfxLogMel
    from model.audio_pretrained import AisfxCNN, load_aisfx_weights
    from model.logmel import LogMel

    torch.set_num_threads(1)
    cnn = AisfxCNN()
    load_aisfx_weights(cnn)
    cnn.eval()
    shipped = model.load_checkpoint("weights/icf-lite-synthavs.safetensors").eval()
    vggish_front, aisfx_front, peak_front = LogMel(), AisfxLogMel(), AisfxLogMel(peak_floor=0.01)

    def batched(fn, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([fn(torch.from_numpy(x[i : i + 64])).numpy() for i in range(0, len(x), 64)])

    def logmel_stats(x):
        lm = vggish_front(x)[:, 0]
        return torch.cat([lm.mean(1), lm.std(1)], dim=1)

    arms: dict[str, dict[str, np.ndarray]] = {}
    for c in CONDITIONS:
        w = np.load(out / f"w16_{c}.npz")["audio"]
        arms.setdefault("vggish_logmel_stats", {})[c] = batched(logmel_stats, w)
        arms.setdefault("vggish_shipped_synthetic", {})[c] = batched(lambda x: shipped.audio_encoder(shipped.logmel(x)), w)
        arms.setdefault("aisfx_ingraph16k", {})[c] = batched(lambda x: cnn(aisfx_front(x)), w)
        # config audio_peak_floor=0.01: each window peak-normalised in the graph (floor -40 dBFS), as aisfx does per file
        arms.setdefault("aisfx_ingraph16k_peaknorm", {})[c] = batched(lambda x: cnn(peak_front(x)), w)
        ref = np.load(out / f"ref16_{c}.npz")["spec"]
        arms.setdefault("aisfx_ownfront16k", {})[c] = batched(cnn, ref)
        if (out / f"ref44_{c}.npz").is_file():
            arms.setdefault("aisfx_ownfront44k_fullband", {})[c] = batched(cnn, np.load(out / f"ref44_{c}.npz")["spec"])
    ess = out / "ess16_clean.npz"
    if ess.is_file():
        arms["aisfx_essentia16k"] = {"clean": batched(cnn, np.load(ess)["spec"])}
    # CPU cost of one window through each audio path (batch 1, one thread; a shared, loaded machine)
    one = torch.from_numpy(np.load(out / "w16_clean.npz")["audio"][:1])
    cost = {}
    for name, fn in (("vggish_shipped_synthetic", lambda x: shipped.audio_encoder(shipped.logmel(x))),
                     ("aisfx_ingraph16k", lambda x: cnn(aisfx_front(x)))):
        with torch.no_grad():
            fn(one)
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                fn(one)
                times.append(time.perf_counter() - t0)
        cost[name] = round(1000 * float(np.median(times)), 1)
    return arms, cost


def ncm(train_x: np.ndarray, train_y: list, test_x: np.ndarray) -> list:
    mean = train_x.mean(0)

    def unit(v):
        v = v - mean
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    labels = sorted(set(train_y))
    centroids = unit(np.stack([train_x[[i for i, y in enumerate(train_y) if y == lab]].mean(0) for lab in labels]))
    return [labels[k] for k in np.argmax(unit(test_x) @ centroids.T, axis=1)]


def probes(arm: dict[str, np.ndarray], meta: list[dict], *, matched: bool = False) -> dict[str, dict[str, float]]:
    """matched=False: clean centroids, test windows in each condition; True: centroids from the same condition."""
    result: dict[str, dict[str, float]] = {}
    train = [i for i, m in enumerate(meta) if m["windows"] >= 2 and m["window"] < m["windows"] // 2]
    test = [i for i, m in enumerate(meta) if m["windows"] >= 2 and m["window"] >= m["windows"] // 2]
    cat_idx = [i for i, m in enumerate(meta) if m["category"]]
    for c, x in arm.items():
        clean = x if matched else arm["clean"]
        pred = ncm(clean[train], [meta[i]["recording"] for i in train], x[test])
        windows = float(np.mean([p == meta[i]["recording"] for p, i in zip(pred, test)]))
        hits: dict[str, list[bool]] = {}
        for rec in sorted({meta[i]["recording"] for i in cat_idx}):
            held = [i for i in cat_idx if meta[i]["recording"] == rec]
            rest = [i for i in cat_idx if meta[i]["recording"] != rec]
            pred = ncm(clean[rest], [meta[i]["category"] for i in rest], x[held])
            hits.setdefault(meta[held[0]]["category"], []).extend(p == meta[i]["category"] for p, i in zip(pred, held))
        balanced = float(np.mean([np.mean(v) for v in hits.values()]))
        result[c] = {"heldout_windows_acc": round(100 * windows, 1), "heldout_recordings_balanced_acc": round(100 * balanced, 1)}
    return result


def probe(out: Path, dest: Path) -> None:
    meta = json.loads((out / "meta.json").read_text())
    cache = out / "embeddings.npz"
    if cache.is_file():  # embeddings of an earlier probe run of the same windows
        flat = dict(np.load(cache))
        arms: dict[str, dict[str, np.ndarray]] = {}
        for key, value in flat.items():
            if "|" in key:
                name, c = key.split("|")
                arms.setdefault(name, {})[c] = value
        cost = json.loads((out / "cost.json").read_text())
    else:
        arms, cost = embed_arms(out)
        np.savez(cache, **{f"{name}|{c}": v for name, arm in arms.items() for c, v in arm.items()})
        (out / "cost.json").write_text(json.dumps(cost))
    rows = {name: probes(arm, meta) for name, arm in arms.items()}
    matched = {name: {c: v for c, v in probes(arm, meta, matched=True).items() if c != "clean"} for name, arm in arms.items()}
    # how much our in-graph front end moves the embedding vs aisfx's own (same 16 kHz windows, same CNN)
    ours, theirs = arms["aisfx_ingraph16k"]["clean"], arms["aisfx_ownfront16k"]["clean"]
    cos = np.sum(ours * theirs, 1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    sims = {"ingraph16k_vs_librosa16k": cos}
    full = arms["aisfx_ownfront44k_fullband"]["clean"]
    sims["librosa16k_vs_librosa44k_fullband"] = np.sum(theirs * full, 1) / (np.linalg.norm(theirs, axis=1) * np.linalg.norm(full, axis=1))
    if "aisfx_essentia16k" in arms:
        e = arms["aisfx_essentia16k"]["clean"]
        sims["ingraph16k_vs_essentia16k"] = np.sum(ours * e, 1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(e, axis=1))
    similarity = {k: {"median": round(float(np.median(v)), 4), "p10": round(float(np.percentile(v, 10)), 4), "min": round(float(v.min()), 4)}
                  for k, v in sims.items()}
    n_rec = len({m["recording"] for m in meta})
    n_cat = {c: len({m["recording"] for m in meta if m["category"] == c}) for c in sorted({m["category"] for m in meta if m["category"]})}
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {platform.processor() or ''} shared 2-core CPU, torch threads 1".strip(),
        "command": "scripts/audio_arms.py (see its docstring for the full sequence)",
        "data": {"windows": len(meta), "recordings": n_rec, "category_recordings": n_cat,
                 "windows_probe_recordings": len({m["recording"] for m in meta if m["windows"] >= 2})},
        "probe": rows,
        "probe_matched_centroids": matched,
        "embedding_cosine": similarity,
        "cpu_ms_per_window_batch1": cost,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "prepare":
        prepare(Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "probe":
        probe(Path(argv[1]), Path(argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
