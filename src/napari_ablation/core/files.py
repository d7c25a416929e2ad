"""Where every file enters and leaves: input checks and all-or-none atomic outputs.

Entry: :func:`input_file` / :func:`input_path` check that a path exists and is a readable
regular file (or folder); :func:`check_nifti` reads a NIfTI file completely (a gzip
stream is decompressed to its end, so truncation and corruption show) and checks its
header against the data; :func:`quiet_native_stderr` keeps the messages that ITK and the
NIfTI library print on the process's stderr away from the user, so that a failure ends
as one line.

Exit: an :class:`OutputSet` collects the files of one action (a margin run's JSON, CSV,
report and labels; a case folder's images and manifest) and writes them all or none:
every file is written under its final name into a hidden temporary folder beside its
target, flushed to disk, verified (size, or a full re-read), and only then renamed onto
the targets. An output that resolves to an input (same real path or same inode), to a
device, a FIFO or a folder, or to a read-only file is refused before anything is
written. Temporary folders are removed on failure and on interruption; folders left by
a killed process are removed by the next write into the same folder.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import stat
import struct
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import AblationError

#: prefix of the hidden temporary folders an :class:`OutputSet` writes into
TMP_PREFIX = ".napari-ablation-tmp-"
#: written into the temporary folders once all files are verified, before the renames
COMMIT_MARKER = ".renaming"

_STDERR_LOCK = threading.RLock()


def _silence_itk_warnings() -> None:
    try:
        import SimpleITK as sitk
    except ImportError:  # pragma: no cover - a runtime dependency
        return
    sitk.ProcessObject.SetGlobalWarningDisplay(False)


_silence_itk_warnings()


# ----------------------------------------------------------------------------- messages


def os_error_message(exc: OSError, path: str | os.PathLike, verb: str = "read") -> str:
    """Say in one line what is wrong with which path.

    Parameters
    ----------
    exc : OSError
        The error raised by the operating system.
    path : str or os.PathLike
        The path the user gave (named in the message).
    verb : str, optional
        What was attempted (``read``, ``write``, ``create``).

    Returns
    -------
    str
        The message, e.g. ``cannot write /x: permission denied``.

    Examples
    --------
    >>> import errno
    >>> os_error_message(PermissionError(errno.EACCES, "Permission denied"), "/x", "write")
    'cannot write /x: permission denied'
    """
    reason = (
        exc.strerror
        or (os.strerror(exc.errno) if exc.errno else "")
        or str(exc)
        or type(exc).__name__
    )
    reason = reason[:1].lower() + reason[1:]
    return f"cannot {verb} {path}: {reason}"


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[list[str]]:
    """Redirect the process's file descriptor 2 while native code (ITK, niftilib) runs.

    A context manager; one thread at a time holds the redirection.

    Yields
    ------
    list of str
        A list that receives the captured (non-blank) lines when the block ends, so a
        caller can turn them into its own one-line message.
    """
    captured: list[str] = []
    with _STDERR_LOCK:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (embedded): nothing to silence
            yield captured
            return
        with tempfile.TemporaryFile() as sink:
            try:
                os.dup2(sink.fileno(), 2)
                try:
                    yield captured
                finally:
                    os.dup2(saved, 2)
            finally:
                os.close(saved)
                sink.seek(0)
                text = sink.read(65536).decode("utf-8", "replace")
                captured.extend(ln.strip() for ln in text.splitlines() if ln.strip())


# ----------------------------------------------------------------------------- entry


def input_path(path: str | os.PathLike, what: str = "file or folder") -> Path:
    """Check that a path given by the user exists and can be read.

    Parameters
    ----------
    path : str or os.PathLike
        A file or a folder given by the user.
    what : str, optional
        How to call it in the message when it is missing.

    Returns
    -------
    pathlib.Path
        ``path`` as a path.

    Raises
    ------
    AblationError
        When it is missing, unreadable, or neither a regular file nor a folder (a device,
        a FIFO: reading one would hang or never end).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise AblationError(f"{p}: no such {what}") from None
    except OSError as exc:
        raise AblationError(os_error_message(exc, p)) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise AblationError(f"{p}: not a regular file")
    if not os.access(p, os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)):
        raise AblationError(f"cannot read {p}: permission denied")
    return p


def input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Check that a path given by the user is a readable file.

    Parameters
    ----------
    path : str or os.PathLike
        A file given by the user.
    what : str, optional
        How to call it in the messages.

    Returns
    -------
    pathlib.Path
        ``path`` as a path.

    Raises
    ------
    AblationError
        As :func:`input_path`, and for a folder.
    """
    p = input_path(path, what)
    if p.is_dir():
        raise AblationError(f"{p}: is a folder, expected a {what}")
    return p


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int = 64 << 20) -> str:
    """Read a small UTF-8 text file (CSV, JSON, .tfm) with one-line errors.

    Parameters
    ----------
    path : str or os.PathLike
        The text file.
    what : str, optional
        How to call the file in messages.
    max_bytes : int, optional
        Larger files are refused (a text input of this kind is never that large).

    Returns
    -------
    str
        The text (a UTF-8 byte order mark removed).

    Raises
    ------
    AblationError
        Missing, unreadable, too large or not UTF-8 text.
    """
    p = input_file(path, what)
    try:
        if p.stat().st_size > max_bytes:
            raise AblationError(f"{p}: too large for a {what} ({p.stat().st_size} bytes)")
        data = p.read_bytes()
    except OSError as exc:
        raise AblationError(os_error_message(exc, p)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AblationError(f"{p.name}: not a text {what} (not UTF-8)") from None


# NIfTI datatype code -> bytes per voxel
_NIFTI_TYPES = {
    2: 1,
    4: 2,
    8: 4,
    16: 4,
    32: 8,
    64: 8,
    128: 3,
    256: 1,
    512: 2,
    768: 4,
    1024: 8,
    1280: 8,
    1536: 16,
    1792: 16,
    2048: 32,
    2304: 4,
}
_NIFTI_FLOAT_TYPES = (16, 64, 1536)
#: floating-point datatypes (complex ones as pairs) whose voxels are checked for NaN/Inf
_NIFTI_FLOAT_CODES = {16: "f4", 32: "f4", 64: "f8", 1792: "f8"}


@dataclass
class NiftiHeader:
    """What :func:`check_nifti` learnt about a NIfTI file.

    Parameters
    ----------
    shape : tuple of int
        The image dimensions of the header, ``(x, y, z, ...)``.
    datatype : int
        The NIfTI datatype code.
    is_float : bool
        Whether the voxels are floating-point (or complex) numbers.
    data_bytes : int
        Bytes of voxel data the header announces.
    scl_slope : float, optional
        The header's value scaling slope (0 or 1: no scaling).
    scl_inter : float, optional
        The header's value scaling intercept.
    """

    shape: tuple[int, ...]
    datatype: int
    is_float: bool
    data_bytes: int
    scl_slope: float = 0.0
    scl_inter: float = 0.0

    @property
    def scaled(self) -> bool:
        """True when the header rescales the stored values (scl_slope/scl_inter)."""
        return self.scl_slope not in (0.0, 1.0) or self.scl_inter != 0.0


def _stream(path: Path, chunk: int = 1 << 22) -> Iterator[bytes]:
    """Yield the decompressed bytes of a file (gzip or plain), chunk by chunk.

    A gzip stream is checked to its end by zlib (CRC and length of every member);
    truncation, corruption and trailing bytes that are not another gzip member raise
    ``EOFError`` or ``zlib.error``.
    """
    with open(path, "rb") as fh:
        first = fh.read(chunk)
        if first[:2] != b"\x1f\x8b":
            data = first
            while data:
                yield data
                data = fh.read(chunk)
            return
        pending = first
        d = zlib.decompressobj(wbits=31)
        while True:
            if not pending:
                pending = fh.read(chunk)
                if not pending:
                    break
            out = d.decompress(pending, chunk)
            pending = d.unconsumed_tail
            if out:
                yield out
            if d.eof:
                rest = d.unused_data + pending + fh.read()
                if rest.strip(b"\0"):  # another gzip member may follow (zero padding is tolerated)
                    if rest[:2] != b"\x1f\x8b":
                        raise zlib.error("trailing bytes after the gzip stream")
                    d = zlib.decompressobj(wbits=31)
                    pending = rest
                    continue
                return
        if not d.eof:
            raise EOFError("compressed data ended before the end of its stream")


@dataclass
class _NiftiFields:
    size: int
    endian: str
    dim: tuple
    datatype: int
    bitpix: int
    pixdim: tuple
    vox_offset: float
    scl: tuple
    qform_code: int
    sform_code: int
    orient: tuple


def _nifti_fields(name: str, head: bytes) -> _NiftiFields:
    for e in ("<", ">"):
        size = struct.unpack(e + "i", head[:4])[0] if len(head) >= 4 else 0
        if size in (348, 540):
            break
    else:
        raise AblationError(f"{name}: not a readable image (no NIfTI header)")
    if len(head) < size:
        raise AblationError(f"{name}: truncated NIfTI header ({len(head)} bytes)")
    if size == 348:
        if head[344:348] != b"n+1\x00":
            raise AblationError(
                f"{name}: not a single-file NIfTI-1 image (magic {head[344:348]!r})"
            )
        return _NiftiFields(
            size,
            e,
            struct.unpack(e + "8h", head[40:56]),
            *struct.unpack(e + "2h", head[70:74]),
            struct.unpack(e + "8f", head[76:108]),
            struct.unpack(e + "f", head[108:112])[0],
            struct.unpack(e + "2f", head[112:120]),
            *struct.unpack(e + "2h", head[252:256]),
            struct.unpack(e + "6f", head[256:280]) + struct.unpack(e + "12f", head[280:328]),
        )
    if head[4:8] != b"n+2\x00":
        raise AblationError(f"{name}: not a single-file NIfTI-2 image")
    return _NiftiFields(
        size,
        e,
        struct.unpack(e + "8q", head[16:80]),
        *struct.unpack(e + "2h", head[12:16]),
        struct.unpack(e + "8d", head[104:168]),
        float(struct.unpack(e + "q", head[168:176])[0]),
        struct.unpack(e + "2d", head[176:192]),
        *struct.unpack(e + "2i", head[344:352]),
        struct.unpack(e + "6d", head[352:400]) + struct.unpack(e + "12d", head[400:496]),
    )


class _FiniteCheck:
    """Count the NaN/Inf voxels of a floating-point NIfTI while its data streams by.

    ITK's NIfTI reader turns them into 0 without a word.
    """

    def __init__(self, f: _NiftiFields):
        import numpy as np

        code = _NIFTI_FLOAT_CODES.get(f.datatype)
        self.dtype = np.dtype(f.endian + code) if code else None
        self.start = int(f.vox_offset) if math.isfinite(f.vox_offset) and f.vox_offset >= 0 else 0
        n = 1
        for v in f.dim[1 : max(1, min(int(f.dim[0]), 7)) + 1]:
            n *= max(int(v), 0)
        self.stop = self.start + n * _NIFTI_TYPES.get(f.datatype, 1)
        self.bad = 0
        self.rest = b""

    def feed(self, chunk: bytes, pos: int) -> None:
        import numpy as np

        if self.dtype is None:
            return
        lo, hi = max(self.start, pos), min(self.stop, pos + len(chunk))
        if hi <= lo:
            return
        buf = self.rest + chunk[lo - pos : hi - pos]
        k = len(buf) // self.dtype.itemsize * self.dtype.itemsize
        arr = np.frombuffer(buf[:k], dtype=self.dtype)
        self.bad += int(arr.size - np.count_nonzero(np.isfinite(arr)))
        self.rest = buf[k:]


def check_nifti(path: str | os.PathLike) -> NiftiHeader:
    """Read a NIfTI-1/NIfTI-2 file completely and check its header against its data.

    A gzip stream is decompressed to its end (its CRC and length are checked), the header
    fields are checked for consistency (dimensions, datatype and bits per voxel, voxel
    offset, finite and non-zero voxel spacing, one position in space: a valid qform
    and/or sform, equal when both are set), the data must hold every voxel the header
    announces, and a floating-point image must have no NaN or infinite voxel.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file.

    Returns
    -------
    NiftiHeader
        What the header says (shape, datatype, data size, value scaling).

    Raises
    ------
    AblationError
        Naming the file and the first problem found.
    """
    p = input_file(path, "image file")
    name = p.name
    try:
        f = finite = None
        head = b""
        total = 0
        for chunk in _stream(p):
            if f is None:
                head += chunk
                if len(head) < 544:
                    continue
                f = _nifti_fields(name, head)
                finite = _FiniteCheck(f)
                chunk = head
            finite.feed(chunk, total)
            total += len(chunk)
        if f is None:  # shorter than 544 bytes
            f = _nifti_fields(name, head)
            finite = _FiniteCheck(f)
            finite.feed(head, 0)
            total = len(head)
    except (EOFError, zlib.error):
        raise AblationError(
            f"{name}: corrupt or truncated (the compressed data does not decompress to its end)"
        ) from None
    except OSError as exc:
        if exc.errno is None:
            raise AblationError(f"{name}: corrupt or truncated compressed data") from None
        raise AblationError(os_error_message(exc, p)) from None
    ndim = f.dim[0]
    if not 1 <= ndim <= 7:
        raise AblationError(f"{name}: corrupt NIfTI header (number of dimensions {ndim})")
    shape = tuple(int(v) for v in f.dim[1 : ndim + 1])
    if any(v < 1 for v in shape):
        raise AblationError(
            f"{name}: corrupt NIfTI header (image size {'x'.join(map(str, shape))})"
        )
    if f.datatype not in _NIFTI_TYPES:
        raise AblationError(f"{name}: corrupt NIfTI header (unknown datatype code {f.datatype})")
    nbytes = _NIFTI_TYPES[f.datatype]
    if f.bitpix != 8 * nbytes:
        raise AblationError(
            f"{name}: corrupt NIfTI header (datatype {f.datatype} with {f.bitpix} bits per voxel)"
        )
    min_offset = 352 if f.size == 348 else 544
    if not (
        math.isfinite(f.vox_offset)
        and f.vox_offset >= min_offset
        and f.vox_offset == int(f.vox_offset)
    ):
        raise AblationError(f"{name}: corrupt NIfTI header (voxel data offset {f.vox_offset})")
    spacing = f.pixdim[1 : min(ndim, 3) + 1]
    if not all(math.isfinite(v) and v != 0 for v in spacing):
        bad = ", ".join(f"{v:g}" for v in spacing)
        raise AblationError(
            f"{name}: voxel spacing must be finite and non-zero, the header says {bad}"
        )
    if not math.isfinite(f.pixdim[0]):
        raise AblationError(f"{name}: corrupt NIfTI header (qfac {f.pixdim[0]})")
    _check_nifti_orientation(name, f.qform_code, f.sform_code, f.orient, f.pixdim)
    if not all(math.isfinite(v) for v in f.scl):
        raise AblationError(f"{name}: corrupt NIfTI header (non-finite intensity scaling)")
    n = 1
    for v in shape:
        n *= v
    need = int(f.vox_offset) + n * nbytes
    if total < need:
        raise AblationError(
            f"{name}: truncated: {total} bytes of data where the header needs {need}"
        )
    if finite.bad:
        raise AblationError(f"{name}: {finite.bad} voxel(s) are NaN or infinite")
    return NiftiHeader(
        shape,
        f.datatype,
        f.datatype in _NIFTI_FLOAT_TYPES,
        n * nbytes,
        float(f.scl[0]),
        float(f.scl[1]),
    )


def _check_nifti_orientation(name: str, qform_code: int, sform_code: int, orient, pixdim) -> None:
    """Check that the header places the image in space once.

    A valid qform and/or sform, equal when both are set.
    """
    if qform_code <= 0 and sform_code <= 0:
        raise AblationError(
            f"{name}: the NIfTI header gives no position in space (qform_code and sform_code are 0)"
        )
    if not all(math.isfinite(v) for v in orient):
        raise AblationError(f"{name}: corrupt NIfTI header (non-finite orientation or origin)")
    b, c, d, qx, qy, qz = orient[:6]
    srow = [orient[6:10], orient[10:14], orient[14:18]]
    q_affine = None
    if qform_code > 0:
        n2 = b * b + c * c + d * d
        if n2 > 1.0 + 1e-5:
            raise AblationError(f"{name}: corrupt NIfTI header (qform quaternion longer than 1)")
        a = math.sqrt(max(0.0, 1.0 - n2))
        rot = [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        scale = [abs(pixdim[1]), abs(pixdim[2]), abs(pixdim[3]) * qfac]
        q_affine = [[rot[i][j] * scale[j] for j in range(3)] + [(qx, qy, qz)[i]] for i in range(3)]
    if sform_code > 0:
        cols = [[srow[i][j] for i in range(3)] for j in range(3)]
        norms = [math.sqrt(sum(v * v for v in col)) for col in cols]
        if min(norms) <= 0:
            raise AblationError(f"{name}: corrupt NIfTI header (sform has a zero axis)")
        for j in range(3):
            for k in range(j + 1, 3):
                cos = sum(cols[j][i] * cols[k][i] for i in range(3)) / (norms[j] * norms[k])
                if abs(cos) > 1e-3:
                    raise AblationError(
                        f"{name}: the NIfTI sform is sheared (axes not perpendicular); not "
                        "supported"
                    )
        if q_affine is not None:
            size = max(norms) + 1.0
            for i in range(3):
                for j in range(4):
                    tol = 1e-3 * (size if j < 3 else max(1.0, abs(srow[i][3])))
                    if abs(q_affine[i][j] - srow[i][j]) > tol:
                        raise AblationError(
                            f"{name}: the NIfTI header's qform and sform place the image "
                            "differently"
                        )


# ----------------------------------------------------------------------------- exit


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a temporary folder of a live writer is left alone)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_alive_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, int(pid))  # QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary folders left in ``folder`` by writers that no longer run.

    A writer killed between the first and the last rename of its set left a marker:
    its remaining (verified) files are then renamed onto their targets first, so the set
    ends complete, unless a target was changed after the kill.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to clean (only its ``.napari-ablation-tmp-<pid>-*`` folders).

    Returns
    -------
    list of pathlib.Path
        The folders removed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        try:
            pid = int(name[len(TMP_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            path = Path(folder) / name
            marker = path / COMMIT_MARKER
            if marker.exists():
                _roll_forward(path, Path(folder), marker.stat().st_mtime)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _roll_forward(tmpdir: Path, folder: Path, since: float) -> None:
    """Finish the renames of a set whose writer was killed while renaming.

    Its files were verified before the first rename; a target changed since then is
    left alone.
    """
    for entry in tmpdir.iterdir():
        if entry.name == COMMIT_MARKER or entry.name.startswith(".old-"):
            continue
        target = folder / entry.name
        with contextlib.suppress(OSError):
            if not target.exists() or target.stat().st_mtime <= since:
                os.replace(entry, target)


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Pending:
    target: Path  # resolved final path
    shown: str  # the path as the user gave it, for messages
    write: Callable[[Path], list[Path]]  # writes the file(s) under the final name into a folder


class OutputSet:
    """Files written together, all or none, never onto an input.

    Parameters
    ----------
    inputs : iterable of path-like, optional
        Files (and folders) the action read; an output resolving to any of them is
        refused (``None`` entries are skipped).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     source = Path(folder) / "in.txt"
    ...     _ = source.write_text("input")
    ...     outs = OutputSet(inputs=[source])
    ...     _ = outs.add_text(Path(folder) / "a.json", "{}")
    ...     _ = outs.add_text(Path(folder) / "b.csv", "label,x,y,z")
    ...     [p.name for p in outs.commit()]
    ['a.json', 'b.csv']

    An input is never overwritten:

    >>> try:
    ...     OutputSet(inputs=["case/pre.nii.gz"]).add_text("case/pre.nii.gz", "")
    ... except AblationError as exc:
    ...     print(exc)
    refusing to write case/pre.nii.gz: it is an input of this command (case/pre.nii.gz)
    """

    def __init__(self, inputs: Iterable[str | os.PathLike | None] = ()):
        self.inputs: list[Path] = []
        for p in inputs:
            if p:
                self.add_input(p)
        self._pending: list[_Pending] = []

    def add_input(self, path: str | os.PathLike) -> None:
        """Protect one more input (and, for ``.mhd``/``.nhdr``, its data file).

        Parameters
        ----------
        path : str or os.PathLike
            A file or folder the action read.
        """
        p = Path(path)
        self.inputs.append(p)
        for data in _detached_data_files(p):
            self.inputs.append(data)

    # --------------------------------------------------------------- checks
    def check(self, path: str | os.PathLike) -> Path:
        """Refuse an output path that must not be written.

        Parameters
        ----------
        path : str or os.PathLike
            The output file as the user gave it.

        Returns
        -------
        pathlib.Path
            Its resolved path (symbolic links followed).

        Raises
        ------
        AblationError
            The output is an input, a folder, not a regular file (a device, a FIFO), a
            read-only file, or named twice in this set.
        """
        shown = str(path)
        p = Path(path)
        if shown.strip() == "":
            raise AblationError("an output file name is empty")
        for inp in self.inputs:
            if _same_file(p, inp):
                raise AblationError(
                    f"refusing to write {shown}: it is an input of this command ({inp})"
                )
        try:
            st = os.stat(p)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise AblationError(os_error_message(exc, shown, "write")) from None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise AblationError(f"cannot write {shown}: it is a folder, expected a file name")
            if not stat.S_ISREG(st.st_mode):
                raise AblationError(
                    f"refusing to write {shown}: not a regular file (a device, FIFO or socket)"
                )
            if not st.st_mode & 0o222:
                raise AblationError(f"refusing to write {shown}: the file is read-only")
        target = Path(os.path.realpath(p))
        for other in self._pending:
            if other.target == target:
                raise AblationError(f"{shown} is named twice as an output")
        return target

    # --------------------------------------------------------------- adding
    def add(self, path: str | os.PathLike, write: Callable[[Path], list[Path]]) -> Path:
        """Add an output written by a function (the path is checked first).

        Parameters
        ----------
        path : str or os.PathLike
            The output file.
        write : callable
            ``write(tmp_path) -> [written files]``: writes the file under its final
            name into a temporary folder, flushes and verifies it, and returns the
            files written (more than one for a detached header and data).

        Returns
        -------
        pathlib.Path
            The resolved target.

        Raises
        ------
        AblationError
            As :meth:`check`.
        """
        target = self.check(path)
        self._pending.append(_Pending(target, str(path), write))
        return target

    def add_bytes(self, path: str | os.PathLike, data: bytes) -> Path:
        """Add a binary output, verified by its size.

        Parameters
        ----------
        path : str or os.PathLike
            The output file.
        data : bytes
            Its content.

        Returns
        -------
        pathlib.Path
            The resolved target.

        Raises
        ------
        AblationError
            As :meth:`check`.
        """

        def write(tmp: Path) -> list[Path]:
            _write_all(tmp, data)
            if tmp.stat().st_size != len(data):
                raise OSError(errno.EIO, "written size differs")
            return [tmp]

        return self.add(path, write)

    def add_text(self, path: str | os.PathLike, text: str) -> Path:
        """Add a UTF-8 text output.

        Parameters
        ----------
        path : str or os.PathLike
            The output file.
        text : str
            Its content.

        Returns
        -------
        pathlib.Path
            The resolved target.

        Raises
        ------
        AblationError
            As :meth:`check`.
        """
        return self.add_bytes(path, text.encode("utf-8"))

    def add_image(self, path: str | os.PathLike, img, *, compress: bool = True) -> Path:
        """Add an image written by SimpleITK and verified by a full re-read.

        Parameters
        ----------
        path : str or os.PathLike
            The output file; the format follows its suffix (``.nii.gz``, ``.nii``,
            ``.nrrd``, ``.mha``; ``.mhd``/``.nhdr`` with a detached data file).
        img : SimpleITK.Image
            The image.
        compress : bool, optional
            Compress the data where the format allows it (never for ``.nii``).

        Returns
        -------
        pathlib.Path
            The resolved target.

        Raises
        ------
        AblationError
            For another suffix, a data file that would land on an input, or as
            :meth:`check`.
        """
        from .io import IMAGE_SUFFIXES, path_suffix

        suffix = path_suffix(path)
        if suffix not in IMAGE_SUFFIXES:
            raise AblationError(
                f"cannot write an image to '{Path(path).name}': use .nii.gz, .nii, .nrrd or .mha"
            )

        low = Path(path).name.lower()
        stem = Path(path).name[: -len(suffix)]
        data_names = {".mhd": (".raw", ".zraw"), ".nhdr": (".raw", ".raw.gz")}.get(
            low[-5:] if low.endswith(".nhdr") else low[-4:], ()
        )
        for ext in data_names:  # the detached data file must not land on an input either
            data_path = Path(path).with_name(stem + ext)
            for inp in self.inputs:
                if _same_file(data_path, inp):
                    raise AblationError(
                        f"refusing to write {path}: its data file {data_path.name} is an "
                        "input of this command"
                    )

        def write(tmp: Path) -> list[Path]:
            import SimpleITK as sitk

            with quiet_native_stderr():
                try:
                    sitk.WriteImage(img, str(tmp), compress and suffix not in (".nii",))
                except RuntimeError as exc:
                    raise OSError(errno.EIO, native_reason(exc)) from None
            written = [tmp] + [d for d in _detached_data_files(tmp) if d.exists()]
            for f in written:
                _fsync_path(f)
            _verify_image(tmp, img)
            return written

        return self.add(path, write)

    # --------------------------------------------------------------- writing
    def commit(self) -> list[Path]:
        """Write every output into temporary folders, verify all, then rename all.

        Returns
        -------
        list of Path
            The files written (resolved paths).

        Raises
        ------
        AblationError
            On any failure (no space, permission, verification); no target is changed.
        """
        if not self._pending:
            return []
        tmpdirs: dict[Path, Path] = {}
        staged: list[tuple[Path, Path, str]] = []  # (temporary file, final file, shown)
        try:
            for item in self._pending:
                folder = item.target.parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise AblationError(os_error_message(exc, folder, "create folder")) from None
                if folder not in tmpdirs:
                    remove_stale_temporaries(folder)
                    try:
                        tmpdirs[folder] = Path(
                            tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=folder)
                        )
                    except OSError as exc:
                        raise AblationError(os_error_message(exc, item.shown, "write")) from None
                tmp = tmpdirs[folder] / item.target.name
                try:
                    written = item.write(tmp)
                except OSError as exc:
                    raise AblationError(os_error_message(exc, item.shown, "write")) from None
                for w in written:
                    staged.append((w, folder / w.name, item.shown))
            self._rename_all(staged, tmpdirs)
        finally:
            for d in tmpdirs.values():
                shutil.rmtree(d, ignore_errors=True)
            self._pending = []
        return [final for _t, final, _s in staged]

    @staticmethod
    def _rename_all(staged: list[tuple[Path, Path, str]], tmpdirs: dict[Path, Path]) -> None:
        # keep the old files (hard links) so that a failed rename can be undone
        backups: list[tuple[Path, Path | None, bool]] = []
        for d in tmpdirs.values():  # every file is verified: a killed rename may be finished later
            _write_all(d / COMMIT_MARKER, b"renaming\n")
        try:
            for tmp, final, shown in staged:
                backup = None
                existed = final.exists()
                if existed:
                    backup = tmpdirs[final.parent] / f".old-{final.name}"
                    with contextlib.suppress(OSError):
                        os.link(final, backup)
                    if not backup.exists():
                        backup = None
                try:
                    os.chmod(tmp, 0o666 & ~_umask())
                    os.replace(tmp, final)
                except OSError as exc:
                    raise AblationError(os_error_message(exc, shown, "write")) from None
                backups.append((final, backup, existed))
        except BaseException:
            for final, backup, existed in reversed(backups):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        os.replace(backup, final)
                    elif not existed:
                        final.unlink()
            raise
        for folder in tmpdirs:
            with contextlib.suppress(OSError):
                _fsync_path(folder, directory=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def native_reason(exc: BaseException) -> str:
    r"""Extract the one informative line of an ITK exception.

    Parameters
    ----------
    exc : BaseException
        The exception SimpleITK raised.

    Returns
    -------
    str
        Its ``Description:`` line, else its last line, else the exception's type name.

    Examples
    --------
    >>> native_reason(RuntimeError("itk::ERROR\nfile.cxx:12\nDescription: Could not read"))
    'Could not read'
    >>> native_reason(RuntimeError('sitk::ERROR: Unable to determine ImageIO reader for "x"'))
    'Unable to determine ImageIO reader for "x"'
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.lower().startswith("description:"):
            return ln.split(":", 1)[1].strip()
    if not lines:
        return type(exc).__name__
    # SimpleITK's own prefix ("sitk::ERROR: ...") is no part of the reason
    return re.sub(r"^(?:sitk|itk)::ERROR:\s*", "", lines[-1], flags=re.IGNORECASE)


def _detached_data_files(path: Path) -> list[Path]:
    """List the data file named by a ``.mhd`` / ``.nhdr`` header (none for other formats)."""
    low = path.name.lower()
    if not low.endswith((".mhd", ".nhdr")):
        return []
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536).decode("latin-1")
    except OSError:
        return []
    out = []
    for line in head.splitlines():
        key, _, value = line.partition(":" if low.endswith(".nhdr") else "=")
        key = key.strip().lower()
        if key in ("elementdatafile", "data file", "datafile"):
            value = value.strip()
            if value and value.upper() not in ("LOCAL", "LIST") and "%" not in value:
                out.append(path.parent / value)
    return out


def _verify_image(tmp: Path, img) -> None:
    """Re-read a written image completely and compare its size and geometry."""
    import numpy as np
    import SimpleITK as sitk

    nifti = tmp.name.lower().endswith((".nii", ".nii.gz"))
    if (
        nifti
    ):  # read to the end of its data (and its gzip stream): the header is then enough from ITK
        try:
            check_nifti(tmp)
        except AblationError as exc:
            raise OSError(errno.EIO, f"the written file does not read back ({exc})") from None
    with quiet_native_stderr():
        try:
            if nifti:
                back = sitk.ImageFileReader()
                back.SetFileName(str(tmp))
                back.ReadImageInformation()
            else:
                back = sitk.ReadImage(str(tmp))
        except RuntimeError as exc:
            raise OSError(
                errno.EIO, f"the written file does not read back ({native_reason(exc)})"
            ) from None
    if back.GetSize() != img.GetSize() or not np.allclose(
        back.GetSpacing(), img.GetSpacing(), rtol=1e-5
    ):
        raise OSError(errno.EIO, "the written file does not read back with the same size")
