"""Fuzz the command line with broken inputs, as an adversarial user would.

A small tumor NIfTI, a ``.tfm`` and a landmark CSV are mutated (fixed seed: byte flips,
truncations, header edits, NaN/Inf/zero spacing, parameter counts, ...) and each
mutation is run through the CLI. Every run must end either

* with exit 0 and the *correct* result for the mutated file, judged by an independent
  reader (nibabel for the image, a plain parser for the transform and the CSV), or
* refused cleanly: exit 2, exactly one line on stderr, and no file changed (inputs and
  the output folder hashed before and after).

Anything else (a wrong number, a traceback, an internal error, two lines, a changed
file, a crash) is "bad". The test prints the figures for the README's Reliability
section.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io as _io
import json
import math
import re
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from napari_ablation import cli
from napari_ablation.core import margin as M

SEED = 14
N_NIFTI, N_TFM, N_CSV = 170, 80, 60
PRE_POINTS = {
    "1": (10.0, 0.0, 0.0),
    "2": (0.0, 12.0, 0.0),
    "3": (0.0, 0.0, 9.0),
    "4": (6.0, 7.0, 8.0),
}


# ----------------------------------------------------------------------------- base files


def _euler():
    e = sitk.Euler3DTransform()
    e.SetCenter((1.0, -2.0, 3.0))
    e.SetParameters((0.02, -0.03, 0.05, 1.5, -1.0, 2.0))
    return e


def make_base(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    c = np.array([1.0, -2.0, 3.0])
    tumor = M.sphere_image([24, 24, 14], [1.0, 1.0, 2.0], (c - [12, 12, 13]).tolist(), c, 6.0)
    e = _euler()
    c_post = np.asarray(e.TransformPoint(tuple(c + [0, 0, 1.0])))
    abl = M.sphere_image([30, 30, 30], [1, 1, 1], (c_post - 15).tolist(), c_post, 10.0)
    paths = {
        "tumor_nii": folder / "tumor.nii",
        "tumor_gz": folder / "tumor.nii.gz",
        "tumor_float": folder / "tumor_float.nii",
        "ablation": folder / "ablation.nii.gz",
        "tfm": folder / "T.tfm",
        "pre_csv": folder / "pre.csv",
        "post_csv": folder / "post.csv",
    }
    sitk.WriteImage(tumor, str(paths["tumor_nii"]))
    sitk.WriteImage(tumor, str(paths["tumor_gz"]), True)
    sitk.WriteImage(sitk.Cast(tumor, sitk.sitkFloat32), str(paths["tumor_float"]))
    sitk.WriteImage(abl, str(paths["ablation"]), True)
    sitk.WriteTransform(e, str(paths["tfm"]))
    for key, pts in (
        ("pre_csv", PRE_POINTS),
        ("post_csv", {k: e.TransformPoint(v) for k, v in PRE_POINTS.items()}),
    ):
        lines = ["label,x,y,z"] + [f"{k},{v[0]!r},{v[1]!r},{v[2]!r}" for k, v in pts.items()]
        paths[key].write_text("\n".join(lines) + "\n")
    return paths


# ----------------------------------------------------------------------------- mutations


def _flip(data: bytes, rng, lo=0, hi=None) -> bytes:
    b = bytearray(data)
    hi = len(b) if hi is None else min(hi, len(b))
    i = int(rng.integers(lo, hi))
    b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def _put(data: bytes, offset: int, fmt: str, *values) -> bytes:
    b = bytearray(data)
    struct.pack_into("<" + fmt, b, offset, *values)
    return bytes(b)


def mutate_nifti(raw: bytes, raw_float: bytes, rng) -> tuple[str, bytes, bool]:
    """(kind, bytes, gzip it?) -- ``raw`` is an uncompressed NIfTI-1 file."""
    kind = str(
        rng.choice(
            [
                "header byte flip",
                "data byte flip",
                "truncate",
                "truncate gz",
                "gz byte flip",
                "spacing",
                "dim",
                "datatype",
                "vox_offset",
                "append garbage",
                "nan voxel",
                "qform",
                "sform",
                "scaling",
            ]
        )
    )
    gz = bool(rng.integers(0, 2))
    if kind == "header byte flip":
        return kind, _flip(raw, rng, 0, 348), gz
    if kind == "data byte flip":
        return kind, _flip(raw, rng, 352), gz
    if kind == "truncate":
        return kind, raw[: int(rng.integers(0, len(raw)))], False
    if kind == "truncate gz":
        z = gzip.compress(raw)
        return kind, z[: int(rng.integers(10, len(z)))], None
    if kind == "gz byte flip":
        z = gzip.compress(raw)
        return kind, _flip(z, rng, 10), None
    if kind == "spacing":
        v = float(rng.choice([0.0, math.nan, math.inf, -math.inf, -1.0, 1e-30, 1e30]))
        return kind, _put(raw, 76 + 4 * int(rng.integers(1, 4)), "f", v), gz
    if kind == "dim":
        i = int(rng.integers(0, 5))
        v = int(rng.choice([0, -1, 1, 2, 4, 8, 100, 32767]))
        return kind, _put(raw, 40 + 2 * i, "h", v), gz
    if kind == "datatype":
        dt, bp = [(2, 8), (4, 16), (16, 32), (64, 64), (4, 8), (99, 8), (512, 16), (2, 16)][
            int(rng.integers(0, 8))
        ]
        return kind, _put(raw, 70, "2h", dt, bp), gz
    if kind == "vox_offset":
        return (
            kind,
            _put(raw, 108, "f", float(rng.choice([0.0, 100.0, 348.0, 356.0, 1e9, math.nan]))),
            gz,
        )
    if kind == "append garbage":
        return (
            kind,
            raw + bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8)),
            gz,
        )
    if kind == "nan voxel":
        b = bytearray(raw_float)
        n = (len(b) - 352) // 4
        struct.pack_into(
            "<f",
            b,
            352 + 4 * int(rng.integers(0, n)),
            float(rng.choice([math.nan, math.inf, -math.inf])),
        )
        return kind, bytes(b), gz
    if kind == "qform":
        off = 256 + 4 * int(rng.integers(0, 6))
        return kind, _put(raw, off, "f", float(rng.choice([0.5, 2.0, math.nan, 1e6, -0.7]))), gz
    if kind == "sform":
        off = 280 + 4 * int(rng.integers(0, 12))
        return kind, _put(raw, off, "f", float(rng.choice([0.0, 3.0, math.nan, -1.0, 1e6]))), gz
    # scaling
    return (
        kind,
        _put(
            raw,
            112,
            "2f",
            float(rng.choice([0.0, 2.0, math.nan, -1.0])),
            float(rng.choice([0.0, 1.0, math.inf])),
        ),
        gz,
    )


def mutate_tfm(text: str, rng) -> tuple[str, bytes]:
    lines = text.splitlines()
    par = next(i for i, ln in enumerate(lines) if ln.startswith("Parameters:"))
    fix = next(i for i, ln in enumerate(lines) if ln.startswith("FixedParameters:"))
    kind = str(
        rng.choice(
            [
                "byte flip",
                "truncate",
                "nan parameter",
                "inf parameter",
                "text parameter",
                "5 parameters",
                "8 parameters",
                "no fixed parameters",
                "trailing garbage",
                "type name",
                "no header",
                "empty",
                "huge parameter",
                "scaling affine",
                "reordered lines",
                "extra fixed parameter",
                "whitespace",
            ]
        )
    )
    if kind == "byte flip":
        return kind, _flip(text.encode(), rng)
    if kind == "truncate":
        return kind, text.encode()[: int(rng.integers(0, len(text)))]
    if kind in ("nan parameter", "inf parameter", "text parameter", "huge parameter"):
        vals = lines[par].split()[1:]
        vals[int(rng.integers(0, len(vals)))] = {
            "nan parameter": "nan",
            "inf parameter": "-inf",
            "text parameter": "abc",
            "huge parameter": "1e999",
        }[kind]
        lines[par] = "Parameters: " + " ".join(vals)
    elif kind == "5 parameters":
        lines[par] = " ".join(lines[par].split()[:-1])
    elif kind == "8 parameters":
        lines[par] += " 0.5 7"
    elif kind == "no fixed parameters":
        del lines[fix]
    elif kind == "trailing garbage":
        lines.append(str(rng.choice(["garbage", "1 2 3", "Transform: Foo", "\x00\x01"])))
    elif kind == "type name":
        i = next(i for i, ln in enumerate(lines) if ln.startswith("Transform:"))
        lines[i] = "Transform: " + str(
            rng.choice(
                [
                    "AffineTransform_double_3_3",
                    "Euler2DTransform_double_2_2",
                    "BSplineTransform_double_3_3",
                    "Euler3DTransform_double_3_2",
                    "FooTransform_double_3_3",
                ]
            )
        )
    elif kind == "no header":
        lines = lines[1:]
    elif kind == "empty":
        lines = []
    elif kind == "scaling affine":
        lines = [
            "#Insight Transform File V1.0",
            "#Transform 0",
            "Transform: AffineTransform_double_3_3",
            "Parameters: 1.2 0 0 0 1 0 0 0 1 0 0 0",
            "FixedParameters: 0 0 0",
        ]
    elif kind == "reordered lines":
        lines[par], lines[fix] = lines[fix], lines[par]
    elif kind == "extra fixed parameter":
        lines[fix] += " 0 0"
    else:  # whitespace: harmless
        lines = [ln + "  " for ln in lines] + ["", ""]
    return kind, ("\n".join(lines) + ("\n" if lines else "")).encode()


def mutate_csv(text: str, rng) -> tuple[str, bytes]:
    lines = text.splitlines()
    kind = str(
        rng.choice(
            [
                "byte flip",
                "truncate",
                "nan coordinate",
                "inf coordinate",
                "missing column",
                "duplicate label",
                "extra column",
                "empty",
                "binary",
                "bom",
                "collinear",
                "two points",
                "no header",
                "quoted",
            ]
        )
    )
    if kind == "byte flip":
        return kind, _flip(text.encode(), rng)
    if kind == "truncate":
        return kind, text.encode()[: int(rng.integers(0, len(text)))]
    if kind in ("nan coordinate", "inf coordinate"):
        i = int(rng.integers(1, len(lines)))
        cells = lines[i].split(",")
        cells[int(rng.integers(1, 4))] = "nan" if kind == "nan coordinate" else "inf"
        lines[i] = ",".join(cells)
    elif kind == "missing column":
        i = int(rng.integers(1, len(lines)))
        lines[i] = ",".join(lines[i].split(",")[:3])
    elif kind == "duplicate label":
        lines.append(lines[1])
    elif kind == "extra column":
        lines = [ln + (",note" if i == 0 else ",x") for i, ln in enumerate(lines)]
    elif kind == "empty":
        lines = []
    elif kind == "binary":
        return kind, bytes(rng.integers(0, 256, 200, dtype=np.uint8))
    elif kind == "bom":
        return kind, ("\ufeff" + text).encode("utf-8")
    elif kind == "collinear":
        lines = ["label,x,y,z", "1,0,0,0", "2,1,1,1", "3,2,2,2", "4,3,3,3"]
    elif kind == "two points":
        lines = lines[:3]
    elif kind == "no header":
        lines = lines[1:]
    else:  # quoted cells: valid CSV
        lines = [",".join(f'"{c}"' for c in ln.split(",")) for ln in lines]
    return kind, ("\n".join(lines) + "\n").encode()


# ----------------------------------------------------------------------------- oracles


def _nib_mask_image(path: Path):
    """The mask an independent reader (nibabel) sees, as a SimpleITK image in LPS;
    None if unreadable."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float64))
        aff = img.affine
    except Exception:  # noqa: BLE001 - any failure: the independent reader cannot read it
        return None
    if data.ndim > 3 and all(
        n == 1 for n in data.shape[3:]
    ):  # one volume of a 4D file is a 3D image
        data = data.reshape(data.shape[:3])
    if data.ndim != 3 or not np.all(np.isfinite(data)) or not np.all(np.isfinite(aff)):
        return None
    lps = np.diag([-1.0, -1.0, 1.0]) @ aff[:3, :4]  # RAS -> LPS
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    if np.any(spacing <= 0):
        return None
    out = sitk.GetImageFromArray(np.transpose(data != 0, (2, 1, 0)).astype(np.uint8))
    out.SetSpacing(spacing.tolist())
    out.SetOrigin(lps[:, 3].tolist())
    out.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return out


def _plain_tfm(data: bytes):
    """A minimal independent parse of an Euler3D ``.tfm``; None unless it is clean."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "#Insight Transform File V1.0":
        return None
    body = [ln for ln in lines if not ln.startswith("#")]
    if len(body) != 3 or body[0] != "Transform: Euler3DTransform_double_3_3":
        return None
    if body[2].startswith("Parameters:"):  # the two lines in either order
        body = [body[0], body[2], body[1]]
    m1 = re.fullmatch(r"Parameters:\s*(\S+(?:\s+\S+){5})", body[1])
    m2 = re.fullmatch(r"FixedParameters:\s*(\S+(?:\s+\S+){2,3})", body[2])
    if not (m1 and m2):
        return None
    try:
        par, fix = [float(v) for v in m1.group(1).split()], [float(v) for v in m2.group(1).split()]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in par + fix) or (len(fix) == 4 and fix[3] != 0):
        return None
    e = sitk.Euler3DTransform()
    e.SetCenter(fix[:3])
    e.SetParameters(par)
    return e


def _plain_points(data: bytes):
    try:
        rows = list(csv.reader(_io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error):
        return None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows or [c.strip().lower() for c in rows[0]][:4] != ["label", "x", "y", "z"]:
        return None
    pts = {}
    for r in rows[1:]:
        try:
            v = [float(c) for c in r[1:4]]
        except (ValueError, IndexError):
            return None
        if len(v) != 3 or not all(math.isfinite(x) for x in v) or r[0].strip() in pts:
            return None
        pts[r[0].strip()] = v
    return pts


def _kabsch(p, q):
    pc, qc = p.mean(0), q.mean(0)
    u, _s, vt = np.linalg.svd((p - pc).T @ (q - qc))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1, 1, d]) @ u.T
    return r, qc - r @ pc


# ----------------------------------------------------------------------------- runner


def _hashes(paths) -> dict[str, str]:
    out = {}
    for p in paths:
        p = Path(p)
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
            elif f.is_dir():
                out[str(f)] = "dir"
    return out


def _run(argv, capfd, subprocess_run: bool):
    if subprocess_run:
        res = subprocess.run(
            [sys.executable, "-m", "napari_ablation.cli", *argv],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return res.returncode, res.stdout, res.stderr
    if capfd is None:  # outside pytest (a larger run for the README)
        import contextlib

        out, err = _io.StringIO(), _io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
        return rc, out.getvalue(), err.getvalue()
    capfd.readouterr()
    rc = cli.main(argv)
    out, err = capfd.readouterr()
    return rc, out, err


def run_fuzz(
    tmp: Path,
    capfd=None,
    *,
    seed: int = SEED,
    counts=(N_NIFTI, N_TFM, N_CSV),
    via_subprocess: int = 6,
):
    """Run every mutation; returns (Counter of outcomes, list of bad cases)."""
    rng = np.random.default_rng(seed)
    base = make_base(tmp / "base")
    raw = base["tumor_nii"].read_bytes()
    raw_float = base["tumor_float"].read_bytes()
    tfm_text = base["tfm"].read_text()
    csv_text = base["pre_csv"].read_text()
    ablation = sitk.ReadImage(str(base["ablation"]))
    stats: Counter = Counter()
    bad: list[str] = []
    jobs = (
        [("nifti", i) for i in range(counts[0])]
        + [("tfm", i) for i in range(counts[1])]
        + [("csv", i) for i in range(counts[2])]
    )
    sub_every = max(1, len(jobs) // max(1, via_subprocess)) if via_subprocess else 0
    for n, (what, i) in enumerate(jobs):
        case = tmp / f"{what}{i:03d}"
        out = case / "out"
        out.mkdir(parents=True)
        (out / "previous.json").write_text("{}")  # an earlier output that must survive a refusal
        if what == "nifti":
            kind, data, gz = mutate_nifti(raw, raw_float, rng)
            name = "tumor.nii.gz" if gz is None or gz else "tumor.nii"
            if gz:
                data = gzip.compress(data)
            mut = case / name
            mut.write_bytes(data)
            argv = [
                "margin",
                "--tumor",
                str(mut),
                "--ablation",
                str(base["ablation"]),
                "--transform",
                str(base["tfm"]),
                "--json",
                str(out / "m.json"),
            ]
        elif what == "tfm":
            kind, data = mutate_tfm(tfm_text, rng)
            mut = case / "T.tfm"
            mut.write_bytes(data)
            argv = [
                "margin",
                "--tumor",
                str(base["tumor_gz"]),
                "--ablation",
                str(base["ablation"]),
                "--transform",
                str(mut),
                "--json",
                str(out / "m.json"),
            ]
        else:
            kind, data = mutate_csv(csv_text, rng)
            mut = case / "pre.csv"
            mut.write_bytes(data)
            argv = [
                "register",
                "--fixed-points",
                str(mut),
                "--moving-points",
                str(base["post_csv"]),
                "--out",
                str(out / "T.tfm"),
            ]
        watched = [tmp / "base", mut]
        before = _hashes([*watched, out])
        sub = bool(sub_every) and n % sub_every == 0
        rc, stdout, stderr = _run(argv, capfd, sub)
        after_inputs = _hashes(watched)
        label = f"{what} #{i} ({kind}{', subprocess' if sub else ''})"
        stats["tried"] += 1
        err_lines = [ln for ln in stderr.splitlines() if ln.strip()]
        if "Traceback" in stderr or "Traceback" in stdout:
            bad.append(f"{label}: traceback")
            continue
        if {k: v for k, v in before.items() if k in after_inputs} != after_inputs:
            bad.append(f"{label}: an input changed")
            continue
        if rc != 0:
            outputs_same = {k: v for k, v in before.items() if k.startswith(str(out))} == _hashes(
                [out]
            )
            if rc == cli.EXIT_BAD_INPUT and len(err_lines) == 1 and outputs_same:
                stats["refused cleanly"] += 1
                stats[f"refused: {what}"] += 1
            else:
                bad.append(
                    f"{label}: exit {rc}, stderr {err_lines[:3]}, outputs unchanged: {outputs_same}"
                )
            continue
        # exit 0: the result must be right for the file as an independent reader sees it
        ok, why = _check_result(what, mut, data, out, base, ablation)
        if ok:
            stats["correct"] += 1
            stats[f"correct: {what}"] += 1
        else:
            bad.append(f"{label}: exit 0 but {why}: {data[:300]!r}")
    stats["bad"] = len(bad)
    return stats, bad


def _check_result(what, mut, data, out, base, ablation):
    if what == "csv":
        pts = _plain_points(data)
        if pts is None:
            return False, "an independent parser cannot read the CSV"
        post = _plain_points(base["post_csv"].read_bytes())
        common = sorted(set(pts) & set(post))
        p = np.array([pts[k] for k in common])
        q = np.array([post[k] for k in common])
        r, t = _kabsch(p, q)
        tx = sitk.ReadTransform(str(out / "T.tfm"))
        probe = np.array([[0.0, 0, 0], [50, 0, 0], [0, 50, 0], [0, 0, 50]])
        got = np.array([tx.TransformPoint(tuple(v)) for v in probe])
        want = probe @ r.T + t
        err = float(np.abs(got - want).max())
        return (err < 1e-6, f"transform off by {err:.3g} mm")
    doc = json.loads((out / "m.json").read_text())
    if what == "tfm":
        tx = _plain_tfm(data)
        if tx is None:
            return False, "an independent parser does not accept this transform file"
        tumor = sitk.ReadImage(str(base["tumor_gz"]))
    else:
        tumor = _nib_mask_image(mut)
        if tumor is None:
            return False, "an independent reader (nibabel) cannot read it"
        tx = _euler()
    try:
        want = M.analyze_margin(tumor, ablation, tx, 5.0)
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory on an absurd spacing
        return (
            False,
            f"the file cannot be analysed as an independent reader sees it ({type(exc).__name__})",
        )
    # the JSON rounds (3 decimals for mm, 2 for ml at most): compare within that rounding
    if not math.isclose(doc["min_margin_mm"], want.min_margin_mm, abs_tol=1e-3):
        return False, f"MTM {doc['min_margin_mm']} where the file means {want.min_margin_mm:.3f}"
    if not math.isclose(doc["tumor_volume_ml"], want.tumor_volume_ml, rel_tol=1e-3, abs_tol=0.006):
        return (
            False,
            f"tumor {doc['tumor_volume_ml']} ml where the file means {want.tumor_volume_ml:.3f}",
        )
    return True, ""


def test_fuzz_cli_inputs(tmp_path, capfd):
    stats, bad = run_fuzz(tmp_path, capfd)
    with capfd.disabled():  # the figures of README.md's Reliability section (pytest -s shows them)
        print("\nfuzz figures:", dict(sorted(stats.items())))
    assert stats["tried"] == N_NIFTI + N_TFM + N_CSV
    assert not bad, "\n".join(bad[:30])
    assert stats["correct"] + stats["refused cleanly"] == stats["tried"]
    assert stats["correct"] > 10 and stats["refused cleanly"] > 100  # both outcomes are exercised
