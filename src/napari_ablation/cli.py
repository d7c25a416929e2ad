"""The ``napari-ablation`` console script: the plugin's computations without a GUI.

The only module that parses arguments and prints: each subcommand is one
``_add_<cmd>_parser`` (its options) and one ``_cmd_<cmd>`` (read the inputs through
``core``, compute, write every output through one all-or-none
:class:`~napari_ablation.core.files.OutputSet`, print a summary). Every problem with
the input ends as one line on stderr and a non-zero exit status (2 for bad input, 1 for
an internal error), never a traceback; Ctrl-C or SIGTERM end any command with
"interrupted" and exit status 130, leaving no temporary file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .core.errors import AblationError, one_line

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130

_INTERRUPT = threading.Event()
_DEFER = threading.Event()


def _label_value(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"label must be an integer, got '{text}'") from None


def _mm(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a distance in mm, got '{text}'") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite distance in mm, got '{text}'")
    return v


def _threshold_mm(text: str) -> float:
    from .core import coverage

    try:
        return coverage.check_threshold(_mm(text))
    except AblationError:
        raise argparse.ArgumentTypeError(
            f"the margin threshold must be {coverage.THRESHOLD_RULE}, got '{text}'"
        ) from None


def _positive_mm(text: str) -> float:
    v = _mm(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive distance in mm, got '{text}'")
    return v


# One rule for every option that names an output, applied while the arguments are parsed,
# before any input is read: a file's name ends in a suffix its format is read back from
# (the suffixes below), and the folder it goes into exists; an output folder may be new,
# but the folder that holds it exists. Nothing creates a missing folder tree.

#: output kind -> (the suffixes that read back as that kind, how to say them)
_OUTPUT_SUFFIXES = {
    "json": ((".json",), ".json"),
    "csv": ((".csv",), ".csv"),
    "html": ((".html", ".htm"), ".html"),
    "pdf": ((".pdf",), ".pdf"),
    "png": ((".png",), ".png"),
}
#: kinds read back by ITK, which picks its reader by the exact, lower-case suffix
#: (SimpleITK reads no "T.TFM" and no "x.NII.GZ")
_ITK_KINDS = ("image", "transform")


def _output_suffixes(kind: str) -> tuple[tuple[str, ...], str]:
    if kind == "image":  # every format SimpleITK writes and re-reads (OutputSet.add_image)
        from .core.io import IMAGE_SUFFIXES

        return IMAGE_SUFFIXES, ", ".join(IMAGE_SUFFIXES[:-1]) + " or " + IMAGE_SUFFIXES[-1]
    if kind == "transform":  # written as ITK text: read back by SimpleITK.ReadTransform, 3D
        # Slicer, ANTs (.h5 / .mat are binary formats: read by --transform, never written)
        from .core.transform import TEXT_TRANSFORM_SUFFIXES

        return TEXT_TRANSFORM_SUFFIXES, " or ".join(TEXT_TRANSFORM_SUFFIXES)
    return _OUTPUT_SUFFIXES[kind]


def _existing_folder(path: Path, text: str) -> None:
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"cannot write '{text}': the folder '{folder}' {what}")


def _output_file(kind: str):
    """An argparse type: an output file of ``kind`` (see :data:`_OUTPUT_SUFFIXES`)."""

    def check(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError("the output file name is empty")
        suffixes, said = _output_suffixes(kind)
        exact = kind in _ITK_KINDS
        if not (text if exact else text.lower()).endswith(suffixes):
            case = " (in lower case)" if exact and text.lower().endswith(suffixes) else ""
            raise argparse.ArgumentTypeError(f"'{text}': the file name must end in {said}{case}")
        _existing_folder(Path(text), text)
        return text

    check.__name__ = f"{kind} output file"
    return check


def _output_folder(text: str) -> str:
    """An argparse type: an output folder (created if new) inside an existing folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder name is empty")
    _existing_folder(Path(text), text)
    return text


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (exit 2)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ----------------------------------------------------------------------------- parsers


def _add_margin_parser(sub) -> None:
    p = sub.add_parser("margin", help="minimal treatment margin of a tumor and an ablation zone")
    p.add_argument(
        "--tumor", required=True, help="tumor labels on the pre grid (file or DICOM folder)"
    )
    p.add_argument("--ablation", required=True, help="ablation-zone labels on the post grid")
    p.add_argument(
        "--pre",
        help="the pre image the tumor was drawn on: tumor labels on another grid are "
        "refused, as in the viewer and in 'cohort run'; the report's slices are drawn "
        "over it",
    )
    p.add_argument(
        "--post",
        help="the post image the ablation zone was drawn on: ablation labels on another "
        "grid are refused",
    )
    p.add_argument(
        "--transform",
        help="registration pre -> post, ITK convention (.tfm); without it the "
        "identity is assumed (pre and post already aligned)",
    )
    p.add_argument(
        "--threshold", type=_threshold_mm, default=5.0, help="margin threshold in mm (default 5)"
    )
    p.add_argument("--tumor-label", type=_label_value, help="use only this label value of --tumor")
    p.add_argument(
        "--ablation-label", type=_label_value, help="use only this label value of --ablation"
    )
    p.add_argument(
        "--json", dest="json_out", type=_output_file("json"), help="write the figures as JSON"
    )
    p.add_argument(
        "--csv", dest="csv_out", type=_output_file("csv"), help="write the figures as CSV"
    )
    p.add_argument(
        "--html", dest="html_out", type=_output_file("html"), help="write the HTML report"
    )
    p.add_argument(
        "--pdf",
        dest="pdf_out",
        type=_output_file("pdf"),
        help="write the report as PDF (pages as needed)",
    )
    p.add_argument(
        "--margin-labels",
        dest="margin_labels_out",
        type=_output_file("image"),
        help="write the coverage-class labels (1 green, 2 yellow, 3 red; with --uncertainty "
        "4 uncertain) on the pre grid",
    )
    u = p.add_argument_group(
        "uncertainty", "an interval on the MTM from registration and segmentation error"
    )
    u.add_argument(
        "--uncertainty",
        action="store_true",
        help="sample the errors below and report the MTM's 95 %% interval",
    )
    u.add_argument(
        "--fixed-points",
        help="landmarks on pre the registration was fitted to (CSV label,x,y,z, LPS mm)",
    )
    u.add_argument("--moving-points", help="the matching landmarks on post")
    u.add_argument(
        "--registration-sd-mm",
        type=_mm,
        help="stated registration error at the tumor: SD in mm per axis (default without "
        "--fixed-points: 1 mm, the reader accuracy the plugin assumes, named as assumed)",
    )
    u.add_argument(
        "--boundary-mm",
        type=_mm,
        help="boundary tolerance of both segmentations in mm "
        "(default: half a voxel along each axis; 0: none)",
    )
    u.add_argument("--samples", type=int, default=200, help="number of samples (default 200)")
    u.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_margin)


def _add_register_parser(sub) -> None:
    p = sub.add_parser("register", help="rigid registration of post (moving) to pre (fixed)")
    p.add_argument("--fixed", help="pre-ablation image")
    p.add_argument("--moving", help="post-ablation image")
    p.add_argument(
        "--fixed-mask",
        help="restrict the metric to this mask on the pre grid (e.g. tumor + margin)",
    )
    p.add_argument("--moving-mask", help="restrict the metric to this mask on the post grid")
    p.add_argument(
        "--exclude-moving",
        help="leave these post voxels out of the metric (e.g. the ablation zone)",
    )
    p.add_argument("--fixed-points", help="landmarks on pre: CSV with header label,x,y,z (LPS mm)")
    p.add_argument(
        "--moving-points", help="landmarks on post: CSV with header label,x,y,z (LPS mm)"
    )
    p.add_argument(
        "--tumor",
        help=(
            "tumor labels on pre: restrict the metric to a ball around the tumor (see --roi-radius)"
        ),
    )
    p.add_argument(
        "--roi-radius",
        type=_positive_mm,
        default=None,
        help=(
            "radius in mm of the region around the tumor (default: the plugin's, 40; the "
            "region always reaches 12 mm beyond the dilated ablation zone left out)"
        ),
    )
    p.add_argument(
        "--out",
        required=True,
        type=_output_file("transform"),
        help="output transform (.tfm or .txt: an ITK text transform), ITK convention pre -> post",
    )
    p.set_defaults(func=_cmd_register)


def _add_interpolate_parser(sub) -> None:
    p = sub.add_parser("interpolate", help="fill unannotated slices between annotated ones")
    p.add_argument("--labels", required=True, help="sparse labels (annotated slices)")
    p.add_argument("--out", required=True, type=_output_file("image"), help="dense labels output")
    p.add_argument(
        "--axis", choices=("z", "y", "x"), default="z", help="slice axis (default z: axial)"
    )
    p.set_defaults(func=_cmd_interpolate)


def _add_demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="open napari with the renal MRI sample case and the plugin's widgets"
    )
    p.add_argument(
        "--case", choices=("renal_mri", "liver_ct"), default="renal_mri", help="sample case"
    )
    p.add_argument(
        "--screenshot",
        type=_output_file("png"),
        help="save a screenshot of the window to this PNG and quit",
    )
    p.set_defaults(func=_cmd_demo)


def _add_samples_parser(sub) -> None:
    p = sub.add_parser("samples", help="(re)generate the bundled synthetic sample cases")
    p.add_argument("--out", type=_output_folder, help="folder (default: the package's sample_data)")
    p.set_defaults(func=_cmd_samples)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="napari-ablation",
        description=(
            "Ablation margins from the command line: the same computations as the napari widgets."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_margin_parser(sub)
    _add_register_parser(sub)
    _add_interpolate_parser(sub)
    _add_demo_parser(sub)
    _add_samples_parser(sub)
    _add_cohort_parser(sub)
    _add_quiz_parser(sub)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def _warn(command: str, text: str) -> None:
    print(f"napari-ablation {command}: warning: {text}", file=sys.stderr)


def _engine_ready(command: str) -> None:
    """Compile the margin engine's kernels now when numba's on-disk cache lacks them (the
    first analysis after an install), saying so in one line on stderr instead of a silent
    wait: half of them in a child process beside this one on a machine of two cores or more.
    Nothing is printed when the cache holds them (every later run)."""
    from .core import warmup

    cold = warmup.cold_kernels()
    if not cold:
        return
    shares = warmup.split(cold, 2)
    about = max(1, round(warmup.compile_seconds(cold, len(shares))))
    print(
        f"napari-ablation {command}: compiling the margin engine once, about {about} s",
        file=sys.stderr,
        flush=True,
    )
    try:
        for share in shares[1:]:
            warmup.start_warm_up(share)
        warmup.warm_up(shares[0])
        warmup.wait()
    finally:
        warmup.stop()  # (interrupted: the child goes too)


# ----------------------------------------------------------------------------- margin


def _cmd_margin(args: argparse.Namespace) -> int:
    from .core import files, geometry, io, margin, resources
    from .core import transform as tfm
    from .core.case import Case

    outs = files.OutputSet(
        inputs=[
            args.tumor,
            args.ablation,
            args.pre,
            args.post,
            args.transform,
            args.fixed_points,
            args.moving_points,
        ]
    )
    for path in (args.json_out, args.csv_out, args.html_out, args.pdf_out, args.margin_labels_out):
        if path:
            outs.check(path)

    _check_uncertainty_args(args)
    notes: list[str] = []
    tumor = io.read_labels(args.tumor, label=args.tumor_label, name="tumor", notes=notes)
    if notes:
        notes[-1] += " (--tumor-label N measures one of them)"
    ablation = io.read_labels(args.ablation, label=args.ablation_label, name="ablation")
    # the rule of the viewer and of 'cohort run': labels live on the grid of their image
    pre = _read_image(args.pre, "pre", notes).image if args.pre else None
    Case(
        pre=pre,
        post=_read_image(args.post, "post", notes).image if args.post else None,
        tumor=tumor,
        ablation=ablation,
    ).check_labels()
    tx = tfm.read_rigid_transform(args.transform) if args.transform else None
    notes += _parts_notes(tumor)
    # the analysis crops each mask padded by its widest peri-tumoral shell (mm)
    need = resources.margin_memory_bytes(tumor, ablation, max(margin.SHELL_WIDTHS))
    resources.check_memory(need, "the margin analysis")
    _engine_ready("margin")
    res = margin.analyze_margin(tumor, ablation, tx, args.threshold)
    unc = _margin_uncertainty(args, res, tumor, ablation, tx) if args.uncertainty else None

    inputs = {"tumor": str(args.tumor), "ablation": str(args.ablation), "transform": args.transform}
    # the GUI's registration line for a transform opened from a file (UAT s13 N9)
    registration = tfm.file_registration_summary(tx, args.transform, res.tumor_centroid_lps)
    if args.json_out:
        from .core import report

        extra = {"inputs": inputs, "registration": registration}
        extra.update({"notes": notes} if notes else {})
        doc = report.json_document(res, extra, unc, transform=tx)
        outs.add_text(args.json_out, json.dumps(doc, indent=2))
    if args.csv_out:
        from .core import report

        outs.add_text(args.csv_out, report.csv_text(res, unc))
    if args.html_out or args.pdf_out:
        from .core import report

        info = {**inputs, "transform": args.transform or "identity (nothing registered)"}
        info.update({k: str(v) for k, v in (("pre", args.pre), ("post", args.post)) if v})
        # the GUI's report: the pre anatomy under the slices, the registration line
        kw = {"info": info, "pre": pre, "transform_note": registration, "uncertainty": unc}
        if args.html_out:
            outs.add_text(args.html_out, report.html_report(res, **kw))
        if args.pdf_out:
            outs.add_bytes(args.pdf_out, report.pdf_report(res, **kw))
    if args.margin_labels_out:
        outs.add_image(
            args.margin_labels_out,
            res.margin_labels_image() if unc is None else unc.margin_labels_image(res),
        )
    outs.commit()
    if tx is None:
        print(f"note: {margin.NO_TRANSFORM_NOTE}")
        if not (args.pre or args.post) and not geometry.same_grid(tumor, ablation):
            print(
                "note: the tumor and ablation masks are on different grids: each is taken "
                "as drawn on its own image (pre, post), the two aligned in LPS; give --pre "
                "and --post to check them against their images"
            )
    for note in notes:
        print(f"note: {note}")
    print(res.summary_text())
    if unc is not None:
        print(unc.summary_text())
    return 0


def _read_image(path, name: str, notes: list[str], **kwargs):
    """``io.read_image``, with what reading chose or changed added to ``notes``, named: a DICOM
    folder of several series (which one was read), a tilted series resampled (UAT s11 N4:
    the CLI read the largest series of a folder without a word)."""
    from .core import io

    loaded = io.read_image(path, **kwargs)
    notes += [f"{name}: {note}" for note in loaded.notes]
    return loaded


def _parts_notes(tumor) -> list[str]:
    """The note of a tumor mask with separate parts (``segmentation.several_parts_note``)."""
    import SimpleITK as sitk

    from .core import segmentation

    note = segmentation.several_parts_note(
        sitk.GetArrayViewFromImage(tumor), tumor.GetSpacing()[::-1], "tumor"
    )
    return [note] if note else []


def _check_uncertainty_args(args: argparse.Namespace) -> None:
    given = [
        o
        for o, v in (
            ("--fixed-points", args.fixed_points),
            ("--moving-points", args.moving_points),
            ("--registration-sd-mm", args.registration_sd_mm),
            ("--boundary-mm", args.boundary_mm),
        )
        if v is not None
    ]
    if not args.uncertainty:
        if given:
            raise AblationError(f"{given[0]} needs --uncertainty")
        return
    if bool(args.fixed_points) != bool(args.moving_points):
        raise AblationError("give both --fixed-points (pre) and --moving-points (post)")
    if args.registration_sd_mm is not None and args.registration_sd_mm < 0:
        raise AblationError("--registration-sd-mm must not be negative")
    if args.boundary_mm is not None and args.boundary_mm < 0:
        raise AblationError("--boundary-mm must not be negative")
    if not 1 <= args.samples <= 100000:
        raise AblationError(f"--samples must lie between 1 and 100000, got {args.samples}")


def _margin_uncertainty(args: argparse.Namespace, res, tumor, ablation, tx):
    """``margin --uncertainty``: the registration sources the options name, then the sampling."""
    import numpy as np

    from .core import landmarks, uncertainty
    from .core import transform as tfm

    c = res.tumor_centroid_lps
    points = spacings = None
    if args.fixed_points:
        fixed, moving = (
            landmarks.read_points_csv(args.fixed_points),
            landmarks.read_points_csv(args.moving_points),
        )
        points = (fixed, moving)
        # clicks lie on the grids of the images the masks were drawn on (pre, post)
        spacings = (tumor.GetSpacing(), ablation.GetSpacing())
        # the landmarks describe the error of their own fit: say so when --transform is another one
        fit = landmarks.fit_landmarks(
            fixed, moving, fixed_spacing=spacings[0], moving_spacing=spacings[1]
        )
        gap = float(
            np.linalg.norm(tfm.transform_points(fit.transform, c) - tfm.transform_points(tx, c))
        )
        if gap > 1.0 + 3.0 * fit.predicted_tre_at(c):
            _warn(
                "margin",
                f"the landmark fit and the registration differ by {gap:.1f} mm at the tumor: the "
                "interval describes the error of the landmark fit",
            )
    if points is None:  # the case model's rule: the reader's accuracy, stated or assumed
        what = uncertainty.REGISTRATION_MADE_BY["file"] if tx else uncertainty.NOT_REGISTERED
        error = uncertainty.reader_accuracy(args.registration_sd_mm, what)
    else:
        error = uncertainty.RegistrationError(
            landmarks=points, landmark_spacings=spacings, sd_mm=args.registration_sd_mm
        )
    return uncertainty.case_uncertainty(
        res,
        error,
        tumor=tumor,
        ablation=ablation,
        transform=tx,
        boundary_mm=args.boundary_mm,
        samples=args.samples,
        seed=args.seed,
    )


# ----------------------------------------------------------------------------- register


def _cmd_register(args: argparse.Namespace) -> int:
    from .core import files, geometry, io, landmarks, registration, resources
    from .core import transform as tfm

    out = str(args.out)
    have_images = bool(args.fixed or args.moving)
    have_points = bool(args.fixed_points or args.moving_points)
    if not have_images and not have_points:
        raise AblationError(
            "give --fixed and --moving (images), "
            "or --fixed-points and --moving-points (landmarks), or both"
        )
    if have_images and not (args.fixed and args.moving):
        raise AblationError("give both --fixed (pre) and --moving (post)")
    if have_points and not (args.fixed_points and args.moving_points):
        raise AblationError("give both --fixed-points (pre) and --moving-points (post)")
    if not have_images and (
        args.fixed_mask or args.moving_mask or args.exclude_moving or args.tumor
    ):
        raise AblationError("masks need the images: give --fixed and --moving")
    outs = files.OutputSet(
        inputs=[
            args.fixed,
            args.moving,
            args.fixed_mask,
            args.moving_mask,
            args.exclude_moving,
            args.fixed_points,
            args.moving_points,
            args.tumor,
        ]
    )
    outs.check(out)

    fixed = moving = None
    fixed_info = moving_info = None
    warnings: list[str] = []
    read_notes: list[str] = []
    if have_images:
        fixed_info = _read_image(args.fixed, "pre (fixed)", read_notes)
        moving_info = _read_image(args.moving, "post (moving)", read_notes)
        fixed, moving = fixed_info.image, moving_info.image

    initial = target = tumor = None
    if args.tumor:
        tumor = io.read_labels(args.tumor, name="tumor")
        target = registration.mask_centroid_lps(tumor)
    if have_points:
        fpts = landmarks.read_points_csv(args.fixed_points)
        mpts = landmarks.read_points_csv(args.moving_points)
        if fixed is not None:
            landmarks.check_inside(fpts, fixed, "pre (fixed)")
            landmarks.check_inside(mpts, moving, "post (moving)")
        fit = landmarks.fit_landmarks(
            fpts,
            mpts,
            center_lps=target,
            strict=True,
            fixed_spacing=None if fixed is None else fixed.GetSpacing(),
            moving_spacing=None if moving is None else moving.GetSpacing(),
        )
        initial = fit.transform
        if target is None:
            target = fit.fixed.mean(axis=0)
        print(
            landmarks.format_fit(
                fit, target, "tumor centre" if tumor is not None else "landmark centroid"
            )
        )

    result_tx = initial
    if have_images:
        if geometry.overlap_fraction(fixed, moving) == 0.0 and initial is None:
            raise AblationError(
                "the pre and post images do not overlap in space "
                "(different patients or frames of reference?)"
            )
        if (
            fixed_info.modality
            and moving_info.modality
            and fixed_info.modality != moving_info.modality
        ):
            warnings.append(
                f"pre is {fixed_info.modality} and post is {moving_info.modality}: "
                "check they are the same patient"
            )
        fixed_mask = io.read_labels(args.fixed_mask, name="fixed") if args.fixed_mask else None
        moving_mask = io.read_labels(args.moving_mask, name="moving") if args.moving_mask else None
        exclude = (
            io.read_labels(args.exclude_moving, name="excluded") if args.exclude_moving else None
        )
        kwargs = {}
        if tumor is None and fixed_mask is None:  # whole image: bound the work
            shrink, sigmas, extra = resources.registration_levels(fixed)
            kwargs = {"shrink_factors": shrink, "smoothing_sigmas": sigmas}
            if extra > 1:
                print(
                    f"whole-image registration of {'x'.join(map(str, fixed.GetSize()))} voxels: "
                    f"finest level subsampled {extra}x along each axis"
                )
        _DEFER.set()  # a signal now only asks the optimiser to stop (it runs in ITK)
        try:
            res = registration.register_rigid(
                fixed,
                moving,
                fixed_mask=fixed_mask,
                tumor_mask=tumor,
                moving_mask=moving_mask,
                moving_exclude=exclude,
                roi_radius_mm=(
                    (args.roi_radius or registration.DEFAULT_ROI_RADIUS_MM)
                    if tumor is not None
                    else None
                ),
                initial=initial,
                cancel=_INTERRUPT.is_set,
                **kwargs,
            )
        except registration.RegistrationCancelled:
            raise KeyboardInterrupt from None
        finally:
            _DEFER.clear()
        if _INTERRUPT.is_set():
            raise KeyboardInterrupt
        warnings += res.warnings + registration.plausibility_warnings(res)
        print("intensity registration: " + res.summary())
        result_tx = res.transform
    outs.add_text(out, tfm.tfm_text(result_tx))
    outs.commit()
    for note in read_notes:
        print(f"note: {note}")
    for w in warnings:  # after success only: a refusal stays one line
        _warn("register", w)
    print(f"wrote {out} (ITK convention: pre -> post)")
    return 0


# ----------------------------------------------------------------------------- interpolate


def _cmd_interpolate(args: argparse.Namespace) -> int:
    """``--axis`` names a patient axis (z axial, y coronal, x sagittal) whatever the voxel
    order of the file; the output has the input's grid and label values."""
    import numpy as np
    import SimpleITK as sitk

    from .core import files, io
    from .core.interpolation import AXIS_NAMES, axis_index, interpolate_slices

    outs = files.OutputSet(inputs=[args.labels])
    outs.check(args.out)
    loaded = io.read_image(args.labels, is_label=True)
    img = loaded.image
    arr = sitk.GetArrayFromImage(img)
    io.check_label_values(arr, Path(args.labels).name)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.allclose(arr, np.round(arr)):
            raise AblationError(f"{args.labels}: not a label image (non-integer values)")
        arr = np.round(arr).astype(np.int32)
    axis = axis_index(args.axis or "z")
    dense = interpolate_slices(arr, axis, img.GetSpacing()[::-1])
    added = int(np.count_nonzero(dense != arr))
    res = sitk.GetImageFromArray(dense.astype(arr.dtype, copy=False))
    res.CopyInformation(img)
    # back onto the input's own grid (voxel order and direction), exactly for axis-aligned input
    res = io.original_geometry_image(res, loaded.original_geometry, is_label=True)
    outs.add_image(args.out, res)
    outs.commit()
    values = [int(v) for v in np.unique(dense) if v != 0]
    print(
        f"interpolated along {AXIS_NAMES[axis]}: {added} voxels added for label(s) "
        f"{', '.join(map(str, values))}; wrote {args.out}"
    )
    return 0


# ----------------------------------------------------------------------------- demo, samples


def _cmd_demo(args: argparse.Namespace) -> int:
    # --screenshot was checked by the parser, before Qt starts (without a display it aborts)
    from .demo import run_demo

    return run_demo(args.case, screenshot=args.screenshot)


def _cmd_samples(args: argparse.Namespace) -> int:
    from .core import samples

    for path in samples.write_all(args.out):
        print(path)
    return 0


# ----------------------------------------------------------------------------- cohort


def _add_cohort_parser(sub) -> None:
    """``napari-ablation cohort synth|run|stats`` (DESIGN.md section 5, issue 12)."""
    p = sub.add_parser("cohort", help="margins of many cases on Dask, joined with outcomes")
    csub = p.add_subparsers(dest="cohort_command", metavar="STEP", parser_class=_Parser)
    csub.required = True

    s = csub.add_parser(
        "synth", help="write a synthetic cohort: N small case folders and outcomes.csv"
    )
    s.add_argument("--n", type=_positive_int, required=True, help="number of cases")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--out", required=True, type=_output_folder, help="output folder")
    s.set_defaults(func=_cmd_cohort_synth)

    r = csub.add_parser("run", help="margin analysis of every case, as tasks on dask.distributed")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--cases",
        nargs="+",
        metavar="DIR",
        help="folders holding case folders (searched recursively)",
    )
    src.add_argument(
        "--manifest", help="CSV case,tumor,ablation[,transform][,pre,post] (paths relative to it)"
    )
    r.add_argument(
        "--out",
        required=True,
        type=_output_folder,
        help="results folder (margins.csv, cases/*.json)",
    )
    r.add_argument(
        "--threshold", type=_threshold_mm, default=5.0, help="margin threshold in mm (default 5)"
    )
    r.add_argument(
        "--scheduler", help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786"
    )
    r.add_argument(
        "--workers",
        type=_positive_int,
        help="worker processes of the local cluster (default: CPUs, at most 4)",
    )
    r.set_defaults(func=_cmd_cohort_run)

    t = csub.add_parser("stats", help="statistics and plots of margins against outcomes")
    t.add_argument("--results", required=True, help="margins.csv written by 'cohort run'")
    t.add_argument("--outcomes", required=True, help="CSV case,ltp,months[,recurrence_octant]")
    t.add_argument(
        "--out",
        required=True,
        type=_output_folder,
        help="report folder (stats.json, plots, report.html)",
    )
    t.add_argument(
        "--threshold",
        type=_threshold_mm,
        default=5.0,
        help="margin threshold of the second Fisher test (default 5)",
    )
    t.set_defaults(func=_cmd_cohort_stats)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got '{text}'")
    return v


def _cmd_cohort_synth(args: argparse.Namespace) -> int:
    from .core import cohort

    res = cohort.write_synthetic_cohort(args.out, n=args.n, seed=args.seed)
    print(f"{len(res.cases)} cases in {args.out}, outcomes in {res.outcomes}")
    print(res.model)
    return 0


def _cmd_cohort_run(args: argparse.Namespace) -> int:
    from .core import cohort

    cases = cohort.read_manifest(args.manifest) if args.manifest else cohort.find_cases(args.cases)
    tty = sys.stderr.isatty()
    shown = {"n": -1}

    def progress(p: cohort.CohortProgress) -> None:
        finished = p.done + p.failed
        if tty:
            print("\r\033[K" + p.text(), end="", file=sys.stderr, flush=True)
        elif finished != shown["n"]:
            print(
                p.text() + (f" [{p.last_case}: {p.last_error}]" if p.last_error else ""),
                file=sys.stderr,
            )
        shown["n"] = finished

    if args.scheduler is None:  # local workers: each loads the kernels from this machine's cache
        _engine_ready("cohort run")
    try:
        run = cohort.run_cohort(
            cases,
            args.out,
            threshold_mm=args.threshold,
            scheduler=args.scheduler,
            workers=args.workers,
            progress=progress,
        )
    finally:
        if tty:
            print(file=sys.stderr)
    for rec in run.records:
        if rec.get("error"):
            print(f"{rec['case']}: error: {rec['error']}", file=sys.stderr)
    print(f"{run.summary()}: {', '.join(str(f) for f in run.files)}")
    return 0


def _cmd_cohort_stats(args: argparse.Namespace) -> int:
    from .core import cohort_stats

    cs, files = cohort_stats.write_stats(
        args.results, args.outcomes, args.out, threshold_mm=args.threshold
    )
    for note in cs.notes:
        print(f"note: {note}", file=sys.stderr)
    s = cs.stats
    mtm = s["cox"]["min_margin_mm"]
    hr = (
        f"HR {mtm['hazard_ratio']:.2f} per mm "
        f"(95 % CI {mtm['ci95'][0]:.2f}-{mtm['ci95'][1]:.2f}, p {mtm['p']:.3g})"
        if mtm["hazard_ratio"] is not None
        else f"Cox not estimable ({mtm['not_estimable']})"
    )
    print(f"{s['n_cases']} cases, {s['n_events']} LTP events; MTM: {hr}")
    print(f"report: {Path(args.out) / 'report.html'} ({len(files)} files)")
    return 0


# ----------------------------------------------------------------------------- quiz (teaching mode)


def _add_quiz_parser(sub) -> None:
    """``napari-ablation quiz make|score|export`` (docs/design.md, section 5, teaching mode)."""
    from .core.quiz import DEFAULT_QUESTIONS, QUESTIONS

    q = sub.add_parser("quiz", help="teaching mode: make a quiz, score answers, export scores")
    qs = q.add_subparsers(dest="quiz_command", metavar="ACTION", parser_class=_Parser)
    qs.required = True

    p = qs.add_parser("make", help="make a quiz folder and its answer key")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--cases",
        nargs="+",
        metavar="DIR",
        help="saved case folders (the expert's labels and registration are the reference)",
    )
    src.add_argument(
        "--synthetic", type=int, metavar="N", help="N generated cases with exact truths"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="first seed of the synthetic cases (default 0)"
    )
    p.add_argument(
        "--modality",
        choices=("mri", "ct", "mixed"),
        default="mixed",
        help="synthetic cases: renal MRI, liver CT or both (default mixed)",
    )
    p.add_argument(
        "--small",
        action="store_true",
        help="synthetic cases with a small field of view (fast, small files)",
    )
    p.add_argument(
        "--questions",
        default=",".join(DEFAULT_QUESTIONS),
        help=(
            f"comma-separated, among {','.join(QUESTIONS)} (default {','.join(DEFAULT_QUESTIONS)})"
        ),
    )
    p.add_argument(
        "--threshold", type=_threshold_mm, default=5.0, help="margin threshold in mm (default 5)"
    )
    p.add_argument(
        "--hide-reference",
        action="store_true",
        help="do not show the reference outlines while margin questions are open",
    )
    p.add_argument("--title", help="quiz title shown to the trainee")
    p.add_argument("--out", required=True, type=_output_folder, help="quiz folder to create")
    p.add_argument(
        "--key",
        required=True,
        type=_output_file("json"),
        help="answer key to write (JSON; keep it apart from the quiz)",
    )
    p.add_argument(
        "--include-key",
        action="store_true",
        help="also put the key into the quiz folder (self-study)",
    )
    p.set_defaults(func=_cmd_quiz_make)

    p = qs.add_parser("score", help="score a trainee's answers CSV against the key")
    p.add_argument("--quiz", required=True, help="the quiz folder")
    p.add_argument("--key", required=True, help="the answer key (JSON)")
    p.add_argument(
        "--answers",
        required=True,
        help="CSV: case,complete,mtm_mm,octant,class[,tumor,ablation,transform]",
    )
    p.add_argument(
        "--json", dest="json_out", type=_output_file("json"), help="write the scores as JSON"
    )
    p.set_defaults(func=_cmd_quiz_score)

    p = qs.add_parser(
        "export",
        help="the teacher's export of the trainees' score files: CSV + HTML with learning curves",
    )
    p.add_argument("--quiz", required=True, help="the quiz folder")
    p.add_argument(
        "--out",
        required=True,
        type=_output_folder,
        help="folder for scores.csv, summary.json and scores.html",
    )
    p.add_argument(
        "--key", help="the answer key: scores answers recorded without it (trainee quizzes)"
    )
    p.set_defaults(func=_cmd_quiz_export)

    p = qs.add_parser(
        "open", help="open napari with the Teach widget on a quiz (default: the bundled quiz)"
    )
    p.add_argument("--quiz", help="the quiz folder (default: a copy of the bundled quiz)")
    p.add_argument(
        "--trainee",
        default="demo",
        help="your name: your score file in the quiz folder (default demo)",
    )
    p.set_defaults(func=_cmd_quiz_open)


def _cmd_quiz_make(args: argparse.Namespace) -> int:
    from .core import quiz

    questions = [q.strip() for q in args.questions.split(",") if q.strip()]
    _engine_ready("quiz make")  # (the answer key is a margin analysis per case)
    made = quiz.make_quiz(
        args.out,
        args.key,
        cases=args.cases,
        n_synthetic=args.synthetic,
        seed=args.seed,
        modality=args.modality,
        questions=questions,
        threshold_mm=args.threshold,
        include_key=args.include_key,
        show_reference=not args.hide_reference,
        small=args.small,
        title=args.title,
        progress=lambda i, n: print(f"case {i}/{n}", file=sys.stderr, flush=True),
    )
    kind = "self-study quiz (key inside)" if args.include_key else "quiz"
    print(
        f"{kind}: {made.folder} ({len(made.case_ids)} cases; questions {', '.join(made.questions)})"
    )
    print(f"answer key: {args.key}")
    return 0


def _cmd_quiz_score(args: argparse.Namespace) -> int:
    import json

    from .core import quiz
    from .core.io import write_text_atomic

    qz = quiz.Quiz.load(args.quiz)
    key = quiz.read_key(args.key)
    quiz.check_key_matches(qz, key)
    answers = quiz.read_answers(args.answers, qz)
    scores = quiz.score_answers(qz, key, answers)
    for cid, s in scores["cases"].items():
        err = (
            "" if s["mtm_abs_error_mm"] is None else f"|MTM error| {s['mtm_abs_error_mm']:.1f} mm, "
        )
        octant = "" if s["octant_result"] is None else f"octant {s['octant_result']}, "
        print(f"{cid}: {err}{octant}{s['explanation']}")
    o = scores["overall"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.0f} %"

    mean = "-" if o["mean_abs_mtm_error_mm"] is None else f"{o['mean_abs_mtm_error_mm']:.2f} mm"
    print(
        f"{o['n_cases']} cases: mean |MTM error| {mean}, octant right {pct(o['octant_accuracy'])}, "
        f"coverage calls right {pct(o['coverage_call_accuracy'])}, "
        f"incomplete coverage found {pct(o['incomplete_sensitivity'])}"
    )
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(scores, indent=2))
    return 0


def _cmd_quiz_open(args: argparse.Namespace) -> int:
    if args.quiz is not None:  # checked before Qt starts (without a display it aborts)
        from .core import quiz

        quiz.Quiz.load(args.quiz)
    import napari

    from .widgets.teach import open_quiz_viewer

    open_quiz_viewer(args.quiz, trainee=args.trainee)
    napari.run()
    return 0


def _cmd_quiz_export(args: argparse.Namespace) -> int:
    from .core import quiz

    for path in quiz.export_scores(args.quiz, args.out, args.key).values():
        print(path)
    return 0


# ----------------------------------------------------------------------------- entry


def _on_signal(signum, _frame):
    _INTERRUPT.set()
    if not _DEFER.is_set():
        raise KeyboardInterrupt


def _install_signal_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not allowed here
            previous[sig] = signal.signal(sig, _on_signal)
    return previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for bad input, 1 for an internal error, 130 when interrupted.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        parser.print_usage(sys.stderr)
        return EXIT_BAD_INPUT
    # Ctrl-C and SIGTERM end the command cleanly from here on, also while the output
    # options are checked (their suffixes come from core modules that import SimpleITK)
    _INTERRUPT.clear()
    _DEFER.clear()
    previous = _install_signal_handlers()
    name = "napari-ablation" + (f" {argv[0]}" if not argv[0].startswith("-") else "")
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        from .core import files  # silences ITK's own warning printing on import (core.files)

        name = f"napari-ablation {args.command}"
        return int(args.func(args) or 0)
    except AblationError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"{name}: error: out of memory", file=sys.stderr)
        return EXIT_INTERNAL
    except OSError as exc:
        from .core import files

        where = exc.filename if exc.filename is not None else "a file"
        print(f"{name}: error: {files.os_error_message(exc, where, 'access')}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        print(f"{name}: internal error: {one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
