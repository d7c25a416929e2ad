"""The ``napari-ablation`` console script (DESIGN.md section 5).

A thin layer over ``core/``: the same functions the widgets call. Every problem with the
input ends as one line on stderr and a non-zero exit status (2 for bad input, 1 for an
unexpected internal error), never a traceback; outputs are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .core.errors import AblationError, one_line

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


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
    if v != v or abs(v) == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite distance in mm, got '{text}'")
    return v


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (exit 2)."""

    def error(self, message: str):  # noqa: D401
        self.exit(EXIT_BAD_INPUT, f"napari-ablation: error: {message} (see 'napari-ablation {self.prog.split()[-1]} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="napari-ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("margin", help="minimal treatment margin of a tumor and an ablation zone")
    p.add_argument("--tumor", required=True, help="tumor labels on the pre grid (file or DICOM folder)")
    p.add_argument("--ablation", required=True, help="ablation-zone labels on the post grid")
    p.add_argument("--transform", help="registration pre -> post, ITK convention (.tfm)")
    p.add_argument("--threshold", type=_mm, default=5.0, help="margin threshold in mm (default 5)")
    p.add_argument("--tumor-label", type=_label_value, help="use only this label value of --tumor")
    p.add_argument("--ablation-label", type=_label_value, help="use only this label value of --ablation")
    p.add_argument("--json", dest="json_out", help="write the figures as JSON")
    p.add_argument("--csv", dest="csv_out", help="write the figures as CSV")
    p.add_argument("--html", dest="html_out", help="write a one-page HTML report")
    p.add_argument("--pdf", dest="pdf_out", help="write the one-page report as PDF")
    p.add_argument("--margin-labels", dest="margin_labels_out", help="write the coverage-class labels (1 green, 2 yellow, 3 red) on the pre grid")
    p.set_defaults(func=_cmd_margin)

    p = sub.add_parser("register", help="rigid registration of post (moving) to pre (fixed)")
    p.add_argument("--fixed", help="pre-ablation image")
    p.add_argument("--moving", help="post-ablation image")
    p.add_argument("--fixed-mask", help="restrict the metric to this mask on the pre grid (e.g. tumor + margin)")
    p.add_argument("--moving-mask", help="restrict the metric to this mask on the post grid")
    p.add_argument("--exclude-moving", help="leave these post voxels out of the metric (e.g. the ablation zone)")
    p.add_argument("--fixed-points", help="landmarks on pre: CSV with header label,x,y,z (LPS mm)")
    p.add_argument("--moving-points", help="landmarks on post: CSV with header label,x,y,z (LPS mm)")
    p.add_argument("--tumor", help="tumor labels on pre: restrict the metric to a ball around the tumor (see --roi-radius)")
    p.add_argument("--roi-radius", type=_mm, default=40.0, help="radius in mm of the region around the tumor (default 40)")
    p.add_argument("--out", required=True, help="output transform (.tfm), ITK convention pre -> post")
    p.set_defaults(func=_cmd_register)

    p = sub.add_parser("interpolate", help="fill unannotated slices between annotated ones")
    p.add_argument("--labels", required=True, help="sparse labels (annotated slices)")
    p.add_argument("--out", required=True, help="dense labels output")
    p.add_argument("--axis", choices=("z", "y", "x"), default="z", help="slice axis (default z: axial)")
    p.set_defaults(func=_cmd_interpolate)

    p = sub.add_parser("demo", help="open napari with the renal MRI sample case and the plugin's widgets")
    p.add_argument("--case", choices=("renal_mri", "liver_ct"), default="renal_mri", help="sample case")
    p.add_argument("--screenshot", help="save a screenshot of the window to this PNG and quit")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("samples", help="(re)generate the bundled synthetic sample cases")
    p.add_argument("--out", help="folder (default: the package's sample_data)")
    p.set_defaults(func=_cmd_samples)

    _add_cohort_parser(sub)
    _add_quiz_parser(sub)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


# ----------------------------------------------------------------------------- commands


def _cmd_margin(args: argparse.Namespace) -> int:
    from .core import margin

    return margin.run_cli(args)


def _cmd_register(args: argparse.Namespace) -> int:
    from .core import registration

    return registration.run_cli(args)


def _cmd_interpolate(args: argparse.Namespace) -> int:
    from .core import segmentation

    return segmentation.run_cli(args)


def _cmd_demo(args: argparse.Namespace) -> int:
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

    s = csub.add_parser("synth", help="write a synthetic cohort: N small case folders and outcomes.csv")
    s.add_argument("--n", type=_positive_int, required=True, help="number of cases")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--out", required=True, help="output folder")
    s.set_defaults(func=_cmd_cohort_synth)

    r = csub.add_parser("run", help="margin analysis of every case, as tasks on dask.distributed")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--cases", nargs="+", metavar="DIR", help="folders holding case folders (searched recursively)")
    src.add_argument("--manifest", help="CSV case,tumor,ablation[,transform][,pre,post] (paths relative to it)")
    r.add_argument("--out", required=True, help="results folder (margins.csv, cases/*.json)")
    r.add_argument("--threshold", type=_mm, default=5.0, help="margin threshold in mm (default 5)")
    r.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    r.add_argument("--workers", type=_positive_int, help="worker processes of the local cluster (default: CPUs, at most 4)")
    r.set_defaults(func=_cmd_cohort_run)

    t = csub.add_parser("stats", help="statistics and plots of margins against outcomes")
    t.add_argument("--results", required=True, help="margins.csv written by 'cohort run'")
    t.add_argument("--outcomes", required=True, help="CSV case,ltp,months[,recurrence_octant]")
    t.add_argument("--out", required=True, help="report folder (stats.json, plots, report.html)")
    t.add_argument("--threshold", type=_mm, default=5.0, help="margin threshold of the second Fisher test (default 5)")
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
            print(p.text() + (f" [{p.last_case}: {p.last_error}]" if p.last_error else ""), file=sys.stderr)
        shown["n"] = finished

    try:
        run = cohort.run_cohort(cases, args.out, threshold_mm=args.threshold, scheduler=args.scheduler,
                                workers=args.workers, progress=progress)
    finally:
        if tty:
            print(file=sys.stderr)
    for rec in run.records:
        if rec.get("error"):
            print(f"{rec['case']}: error: {rec['error']}", file=sys.stderr)
    print(f"{len(run.records)} cases ({len(run.computed)} computed, {len(run.reused)} unchanged, "
          f"{len(run.failed)} failed): {', '.join(str(f) for f in run.files)}")
    return 0


def _cmd_cohort_stats(args: argparse.Namespace) -> int:
    from .core import cohort_stats

    cs, files = cohort_stats.write_stats(args.results, args.outcomes, args.out, threshold_mm=args.threshold)
    for note in cs.notes:
        print(f"note: {note}", file=sys.stderr)
    s = cs.stats
    mtm = s["cox"]["min_margin_mm"]
    hr = (f"HR {mtm['hazard_ratio']:.2f} per mm (95 % CI {mtm['ci95'][0]:.2f}-{mtm['ci95'][1]:.2f}, p {mtm['p']:.3g})"
          if mtm["hazard_ratio"] is not None else f"Cox not estimable ({mtm['not_estimable']})")
    print(f"{s['n_cases']} cases, {s['n_events']} LTP events; MTM: {hr}")
    print(f"report: {Path(args.out) / 'report.html'} ({len(files)} files)")
    return 0


# ----------------------------------------------------------------------------- quiz (teaching mode)


def _add_quiz_parser(sub) -> None:
    """``napari-ablation quiz make|score|export`` (DESIGN.md section 5, teaching mode)."""
    from .core.quiz import DEFAULT_QUESTIONS, QUESTIONS

    q = sub.add_parser("quiz", help="teaching mode: make a quiz, score answers, export scores")
    qs = q.add_subparsers(dest="quiz_command", metavar="ACTION", parser_class=_Parser)
    qs.required = True

    p = qs.add_parser("make", help="make a quiz folder and its answer key")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cases", nargs="+", metavar="DIR", help="saved case folders (the expert's labels and registration are the reference)")
    src.add_argument("--synthetic", type=int, metavar="N", help="N generated cases with exact truths")
    p.add_argument("--seed", type=int, default=0, help="first seed of the synthetic cases (default 0)")
    p.add_argument("--modality", choices=("mri", "ct", "mixed"), default="mixed", help="synthetic cases: renal MRI, liver CT or both (default mixed)")
    p.add_argument("--small", action="store_true", help="synthetic cases with a small field of view (fast, small files)")
    p.add_argument("--questions", default=",".join(DEFAULT_QUESTIONS),
                   help=f"comma-separated, among {','.join(QUESTIONS)} (default {','.join(DEFAULT_QUESTIONS)})")
    p.add_argument("--threshold", type=_mm, default=5.0, help="margin threshold in mm (default 5)")
    p.add_argument("--hide-reference", action="store_true", help="do not show the reference outlines while margin questions are open")
    p.add_argument("--title", help="quiz title shown to the trainee")
    p.add_argument("--out", required=True, help="quiz folder to create")
    p.add_argument("--key", required=True, help="answer key to write (JSON; keep it apart from the quiz)")
    p.add_argument("--include-key", action="store_true", help="also put the key into the quiz folder (self-study)")
    p.set_defaults(func=_cmd_quiz_make)

    p = qs.add_parser("score", help="score a trainee's answers CSV against the key")
    p.add_argument("--quiz", required=True, help="the quiz folder")
    p.add_argument("--key", required=True, help="the answer key (JSON)")
    p.add_argument("--answers", required=True, help="CSV: case,complete,mtm_mm,octant,class[,tumor,ablation,transform]")
    p.add_argument("--json", dest="json_out", help="write the scores as JSON")
    p.set_defaults(func=_cmd_quiz_score)

    p = qs.add_parser("export", help="the teacher's export of the trainees' score files: CSV + HTML with learning curves")
    p.add_argument("--quiz", required=True, help="the quiz folder")
    p.add_argument("--out", required=True, help="folder for scores.csv, summary.json and scores.html")
    p.add_argument("--key", help="the answer key: scores answers recorded without it (trainee quizzes)")
    p.set_defaults(func=_cmd_quiz_export)

    p = qs.add_parser("open", help="open napari with the Teach widget on a quiz (default: the bundled quiz)")
    p.add_argument("--quiz", help="the quiz folder (default: a copy of the bundled quiz)")
    p.add_argument("--trainee", default="demo", help="your name: your score file in the quiz folder (default demo)")
    p.set_defaults(func=_cmd_quiz_open)


def _cmd_quiz_make(args: argparse.Namespace) -> int:
    from .core import quiz

    questions = [q.strip() for q in args.questions.split(",") if q.strip()]
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
    print(f"{kind}: {made.folder} ({len(made.case_ids)} cases; questions {', '.join(made.questions)})")
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
        err = "" if s["mtm_abs_error_mm"] is None else f"|MTM error| {s['mtm_abs_error_mm']:.1f} mm, "
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AblationError as exc:
        print(f"napari-ablation {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"napari-ablation {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"napari-ablation {args.command}: error: out of memory", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        print(f"napari-ablation {args.command}: internal error: {one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
