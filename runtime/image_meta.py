"""What makes an output the same picture as its input, besides the pixels: orientation, colour
profile, EXIF and resolution (read and written with Pillow), and checks that an input file is one
whole, undamaged picture.

- EXIF orientation is applied when reading (a phone portrait stays upright) and the written EXIF
  says orientation 1, so no viewer rotates it twice.
- A lossless WebP comes back lossless (as a WebP, unless ``--quality`` is given).
- XMP (captions, ratings, rights, keywords) goes to PNG (iTXt), JPEG (APP1), WebP and 8-bit TIFF
  (tag 700), its orientation, if it says one, set to 1 as the EXIF's is. A PNG's text chunks
  (Author, Description, a generator's parameters) go to a PNG output; a JPEG's comment is the text
  "Comment", and goes to a JPEG's COM segment or a PNG's text.
- A PNG's colour encoding (gAMA, cHRM, sRGB, cICP, mDCV, cLLI chunks) goes to a PNG output.
- Metadata Pillow finds damaged is left out, and a note says so.
- The ICC profile, EXIF and DPI go to the output where its format holds them: PNG (iCCP, eXIf,
  pHYs chunks, written by PngStripWriter), JPEG (APP2, APP1, JFIF), WebP (ICCP, EXIF chunks) and
  8-bit TIFF (tags); 16-bit and float TIFFs and BMP keep the DPI only (OpenCV writes them).
  The DPI is multiplied by the model's scale, so the printed size stays the same.
- What an output's format cannot hold is said in one line (``dropped``), never dropped silently.
- An input with several frames (APNG, animated WebP or GIF, multi-page TIFF) is refused: only
  its first frame would be restored.
- A JPEG that libjpeg decodes with a warning ("Corrupt JPEG data", "premature end") is damaged:
  the missing part would come out flat grey.
"""
import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace

import numpy as np

from .errors import InputError

ORIENTATION = 0x0112
XMP_TAG = 700  # TIFF's XMLPacket
PNG_XMP = "XML:com.adobe.xmp"  # the keyword of a PNG's XMP chunk
DEFAULT_QUALITY = 95  # JPEG and WebP, as OpenCV wrote them before
COMMENT = "Comment"  # the text keyword a JPEG's comment (COM) is read as and written from
# a PNG's chunks that say how its values map to colours (PNG 3rd edition: cICP, mDCV and cLLI for
# HDR), with their lengths: one of another length is not carried
COLOUR_CHUNKS = {b"gAMA": 4, b"cHRM": 32, b"sRGB": 1, b"cICP": 4, b"mDCV": 24, b"cLLI": 8}
# the ImageInfo fields each way of writing keeps (write_image), the rest is ``dropped``
KEPT = {
    "PNG": {"icc_profile", "exif", "xmp", "text", "colour"},
    "JPEG": {"icc_profile", "exif", "xmp", COMMENT},
    "WEBP": {"icc_profile", "exif", "xmp"},
    "TIFF": {"icc_profile", "exif", "xmp"},  # 8-bit, written by Pillow
    "OpenCV": set(),  # BMP, 16-bit and float TIFF: the DPI only
}
# tiff:Orientation="6" or <tiff:Orientation>6</tiff:Orientation>: the pixels are turned upright
# when read, so an XMP that still said 6 would have a viewer turn them again
_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation(?:="|>))(\d)(["<])')
# EXIF orientation -> how to turn the stored pixels upright (numpy, any dtype and channel count).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


@dataclass
class ImageInfo:
    """What an output carries over from its input (None: the input had none)."""

    icc_profile: bytes = None
    exif: bytes = None  # an EXIF block (TIFF structure, no "Exif\0\0" prefix) with orientation 1
    dpi: tuple = None  # (x, y) dots per inch
    orientation: int = 1  # as stored in the input, already applied to the pixels read
    lossless: bool = False  # the input was a lossless WebP: so is a WebP output
    xmp: bytes = None  # the XMP packet, its orientation (if any) set to 1
    text: tuple = ()  # ((keyword, text), ...): a PNG's text chunks (XMP left out), a JPEG's comment
    colour: tuple = ()  # a PNG's COLOUR_CHUNKS, ((type, data), ...) as stored

    def scaled(self, scale):
        """The info for an output ``scale`` times larger: same print size, so DPI x scale."""
        if self.dpi is None or scale == 1:
            return self
        return replace(self, dpi=tuple(d * scale for d in self.dpi))


def read_info(path):
    """ImageInfo of an image file, InputError for one with several frames. Files Pillow cannot
    identify (float TIFFs) have no info; OpenCV still reads their pixels. One whose metadata Pillow
    finds damaged has none either, and a note says so."""
    from PIL import Image, UnidentifiedImageError

    # The pixel limit is ours (image_header.check_image_file ran first); Pillow's own, lower one
    # would warn on stderr or refuse a picture the runtime accepts.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > 1:
                raise InputError(path, f"has {frames} frames ({image.format} animation or pages); only single-frame images are restored",
                                 "extract the frames (e.g. with ffmpeg) and restore the folder")
            exif = image.getexif()
            orientation = exif.get(ORIENTATION, 1)
            raw = image.info.get("exif")
            dpi = image.info.get("dpi")
            icc = image.info.get("icc_profile") or None
            lossless = image.format == "WEBP" and _webp_is_lossless(path)
            xmp = image.info.get("xmp") or (image.tag_v2.get(XMP_TAG) if hasattr(image, "tag_v2") else None)
            # the text chunks before the pixels, as Pillow read them on opening (its ``text`` would
            # decode the whole picture to find any after them)
            text = tuple((k, v) for k, v in image.info.items() if image.format == "PNG" and isinstance(v, str) and k != PNG_XMP)
            if image.format == "JPEG" and image.info.get("comment"):  # any bytes, kept as they are
                text = ((COMMENT, image.info["comment"].decode("utf-8", "surrogateescape")),)
            colour = _png_colour_chunks(path) if image.format == "PNG" else ()
    except UnidentifiedImageError:  # a format Pillow does not read (a float TIFF): OpenCV reads its pixels
        return ImageInfo()
    except (OSError, ValueError, SyntaxError) as e:  # a damaged chunk or tag: said, not dropped silently
        from .media.mux import notice  # not at the top: the media package imports this module

        notice(f"{path}: its metadata cannot be read ({e}): the output carries none of it")
        return ImageInfo()
    if raw:
        exif[ORIENTATION] = 1
        raw = exif.tobytes()
        raw = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if dpi is not None:
        try:
            dpi = tuple(float(d) for d in dpi[:2])
            dpi = dpi if all(np.isfinite(dpi)) and min(dpi) > 0 else None
        except (TypeError, ValueError):
            dpi = None
    xmp = xmp.encode() if isinstance(xmp, str) else bytes(xmp) if xmp else None
    return ImageInfo(icc, raw or None, dpi, orientation if orientation in _UPRIGHT else 1, lossless,
                     _XMP_ORIENTATION.sub(rb"\g<1>1\g<3>", xmp) if xmp else None, text, colour)


def dropped(info, kept):
    """What of ``info`` a file that keeps the fields ``kept`` (a ``KEPT`` value) loses, in words
    (empty: nothing). Gamma and chromaticity count only where they say the colours: a PNG with an
    sRGB chunk or a colour profile is read the same without them."""
    lost = [name for field, name in (("icc_profile", "colour profile"), ("exif", "EXIF"), ("xmp", "XMP"))
            if getattr(info, field) and field not in kept]
    text = [k for k, _ in info.text if "text" not in kept and k not in kept]
    if text:
        lost.append(f"text ({', '.join(text)})")
    kinds = {kind for kind, _ in info.colour}
    if "colour" not in kept and kinds - {b"sRGB"} and b"sRGB" not in kinds and not info.icc_profile:
        lost.append(f"colour encoding ({', '.join(sorted(k.decode() for k in kinds))})")
    return lost


def _png_colour_chunks(path):
    """A PNG's COLOUR_CHUNKS (the first of each type), walked from its signature to its first
    palette or pixel chunk; the others are skipped, not read."""
    chunks = {}
    with open(path, "rb") as f:
        f.seek(8)
        while len(head := f.read(8)) == 8:
            size, kind = int.from_bytes(head[:4], "big"), head[4:]
            if kind in (b"PLTE", b"IDAT", b"IEND"):
                break
            if COLOUR_CHUNKS.get(kind) == size:
                chunks.setdefault(kind, f.read(size))
                size = 0
            f.seek(size + 4, os.SEEK_CUR)  # the data (unless read), then the CRC: Pillow has checked it
    return tuple(chunks.items())


def _webp_is_lossless(path):
    """Whether a WebP file's picture is a VP8L (lossless) bitstream: the RIFF chunks after the
    12-byte header are walked to the first picture chunk (VP8X, ICCP, ALPH, ... come first)."""
    with open(path, "rb") as f:
        f.seek(12)
        while len(head := f.read(8)) == 8:
            fourcc, size = head[:4], int.from_bytes(head[4:], "little")
            if fourcc in (b"VP8 ", b"VP8L"):
                return fourcc == b"VP8L"
            f.seek(size + (size & 1), os.SEEK_CUR)
    return False


def upright(image, orientation):
    """``image`` turned as its EXIF orientation says (a copy in C order; the same array for 1)."""
    turn = _UPRIGHT.get(orientation)
    return image if turn is None else np.ascontiguousarray(turn(image))


@contextlib.contextmanager
def captured_stderr():
    """Collect what C libraries (libjpeg) print on file descriptor 2 while the block runs; the
    collected text is in the yielded list afterwards. Python's own stderr is flushed first."""
    sys.stderr.flush()
    saved = os.dup(2)
    text = []
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


JPEG_DAMAGE = ("Corrupt JPEG data", "Premature end", "premature end", "Bogus", "Invalid JPEG", "Unsupported marker")


def check_decoder_messages(path, messages):
    """InputError when libjpeg warned while decoding ``path``: its picture is incomplete."""
    for line in "".join(messages).splitlines():
        if any(word in line for word in JPEG_DAMAGE):
            raise InputError(path, f"is damaged ({line.strip().rstrip('.')}): part of the picture is missing",
                             "use an undamaged copy of the file")


def save_with_pillow(image, path, fmt, info, quality):
    """Write an 8-bit RGB(A)/gray(+alpha) array with Pillow in ``fmt`` (JPEG, WEBP, TIFF), with
    ``info``'s profile, EXIF and DPI. JPEG holds no alpha: it is dropped there. ``quality`` None:
    the default, or lossless for a WebP from a lossless one."""
    from PIL import Image

    channels = image.shape[2] if image.ndim == 3 else 1
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    picture = Image.fromarray(image[..., 0] if image.ndim == 3 and channels == 1 else image, mode)
    if fmt == "JPEG" and channels in (2, 4):
        picture = picture.convert("L" if channels == 2 else "RGB")
    options = {}
    if fmt == "WEBP" and info.lossless and quality is None:
        options["lossless"] = True
    elif fmt in ("JPEG", "WEBP"):
        quality = options["quality"] = quality or DEFAULT_QUALITY
    if fmt == "JPEG":
        options["subsampling"] = 0 if quality >= 90 else 2  # full-resolution colour at high quality: restored edges stay crisp
    if info.icc_profile:
        options["icc_profile"] = info.icc_profile
    if info.xmp and fmt == "TIFF":
        options["tiffinfo"] = {XMP_TAG: info.xmp}
    elif info.xmp:
        options["xmp"] = info.xmp
    if info.exif:
        options["exif"] = b"Exif\x00\x00" + info.exif if fmt in ("JPEG", "WEBP") else info.exif
    comment = dict(info.text).get(COMMENT)
    if comment is not None and fmt == "JPEG":
        options["comment"] = comment.encode("utf-8", "surrogateescape")
    if info.dpi:
        options["dpi"] = tuple(int(round(d)) for d in info.dpi) if fmt == "JPEG" else info.dpi
    if fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    picture.save(path, fmt, **options)
