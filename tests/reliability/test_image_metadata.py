"""Rule 7 of docs/RELIABILITY.md: an output is the same picture as its input: upright, same colour
profile, EXIF and print size, alpha kept, gray+alpha stays gray+alpha. Files are made with Pillow
and restored by the real command with a real (tiny) ONNX model."""
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps
from PIL.PngImagePlugin import PngInfo

from restore.runtime.streams import read_image
from restore.runtime.image_meta import ORIENTATION

MAKE, SOFTWARE = 0x010F, 0x0131
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def tagged(kit, orientation=1):
    exif = Image.Exif()
    exif[MAKE] = "RestoreTestCam"
    exif[ORIENTATION] = orientation
    return Image.fromarray(kit.noise((30, 50, 3))), exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_on_read(tmp_path, kit, orientation):
    picture, exif = tagged(kit, orientation)
    path = tmp_path / "o.png"
    picture.save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(read_image(path), expected)


def test_a_phone_portrait_comes_out_upright_with_orientation_1(tmp_path, kit, tiny_model):
    picture, exif = tagged(kit, orientation=6)  # stored landscape, shown portrait
    src = tmp_path / "phone.jpg"
    picture.save(src, exif=exif, quality=95)
    out = tmp_path / "out.jpg"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    with Image.open(out) as restored:
        assert restored.size == (30, 50), "portrait: 30 wide, 50 high"
        assert restored.getexif().get(ORIENTATION, 1) == 1, "already upright: no viewer may turn it again"
        assert restored.getexif()[MAKE] == "RestoreTestCam"


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_exif_and_dpi_are_carried_to_the_output(tmp_path, kit, tiny_model, suffix):
    picture, exif = tagged(kit)
    src = tmp_path / "tagged.png"
    picture.save(src, exif=exif, icc_profile=SRGB, dpi=(300, 300))
    out = tmp_path / f"out{suffix}"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    with Image.open(out) as restored:
        assert restored.info.get("icc_profile") == SRGB
        assert restored.getexif().get(MAKE) == "RestoreTestCam"
        if suffix != ".webp":  # WebP has no resolution field
            assert restored.info["dpi"] == pytest.approx((300, 300), abs=0.5)


def test_dpi_scales_with_the_model_so_the_print_size_stays(tmp_path, kit):
    from restore.runtime.testing import write_conv_artifact

    x4 = write_conv_artifact(tmp_path / "x4", layers=1, scale=4, tile=32, overlap=8, batch=2)
    src = tmp_path / "in.png"
    Image.fromarray(kit.noise((20, 24, 3))).save(src, dpi=(72, 72))
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.png", "--model", x4, "-q")
    assert result.code == 0, result.stderr
    with Image.open(tmp_path / "out.png") as restored:
        assert restored.size == (96, 80)
        assert restored.info["dpi"] == pytest.approx((288, 288), abs=0.5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gray_alpha_png_stays_gray_alpha_with_its_alpha(tmp_path, kit, tiny_model, dtype):
    gray = kit.noise((24, 40), dtype, seed=1)
    alpha = kit.noise((24, 40), dtype, seed=2)
    src = tmp_path / "la.png"
    if dtype == np.uint8:
        Image.fromarray(np.dstack([gray, alpha]), "LA").save(src)
    else:
        from restore.runtime.streams import PngStripWriter

        writer = PngStripWriter(src, (24, 40, 2), dtype)
        writer[0:24] = np.dstack([gray, alpha])
        writer.close()
    out = tmp_path / "out.png"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    with open(out, "rb") as f:
        assert f.read(26)[25] == 4, "PNG colour type 4: gray + alpha"
    restored = read_image(out)
    assert restored.shape == (24, 40, 2) and restored.dtype == dtype
    np.testing.assert_array_equal(restored[..., 1], alpha)


@pytest.mark.parametrize("suffix", [".webp", ".tif"])
def test_gray_alpha_keeps_its_alpha_in_other_formats(tmp_path, kit, tiny_model, suffix):
    src = tmp_path / "la.png"
    alpha = kit.noise((24, 40), seed=2)
    Image.fromarray(np.dstack([kit.noise((24, 40), seed=1), alpha]), "LA").save(src)
    out = tmp_path / f"out{suffix}"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    with Image.open(out) as restored:
        assert restored.mode in ("LA", "RGBA")
        np.testing.assert_array_equal(np.asarray(restored)[..., -1], alpha)


def test_quality_sets_jpeg_and_webp_compression(tmp_path, kit, tiny_model):
    src = tmp_path / "in.png"
    Image.fromarray(kit.noise((64, 64, 3))).save(src)
    for suffix in (".jpg", ".webp"):
        sizes = {}
        for quality in (20, 95):
            out = tmp_path / f"q{quality}{suffix}"
            result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "--quality", quality, "-q")
            assert result.code == 0, result.stderr
            sizes[quality] = out.stat().st_size
        assert sizes[20] < sizes[95] * 0.7, sizes
    bad = kit.run_cli("restore", "run", src, "-o", tmp_path / "x.jpg", "--model", tiny_model, "--quality", 0)
    assert bad.code == 2 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("made, quality, expected", [("lossless", None, True), ("lossy", None, False), ("lossless", "90", False)])
def test_a_lossless_webp_comes_back_lossless(tmp_path, kit, tiny_model, made, quality, expected):
    from restore.runtime.image_meta import _webp_is_lossless

    src, out = tmp_path / "in.webp", tmp_path / "out.webp"
    Image.fromarray(kit.noise((40, 48, 3))).save(src, lossless=made == "lossless", quality=90)
    assert _webp_is_lossless(src) == (made == "lossless")
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q", *(["--quality", quality] if quality else []))
    assert result.code == 0, result.stderr
    assert _webp_is_lossless(out) == expected
    if expected:  # every pixel as restored: the same as a PNG of the same run
        png = tmp_path / "out.png"
        assert kit.run_cli("restore", "run", src, "-o", png, "--model", tiny_model, "-q").code == 0
        np.testing.assert_array_equal(read_image(out), read_image(png))


XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
       b'tiff:Orientation="6"><dc:rights>CC BY 4.0, Ada</dc:rights></rdf:Description></rdf:RDF></x:xmpmeta>')


@pytest.mark.parametrize("source", [".png", ".jpg", ".webp", ".tif"])
@pytest.mark.parametrize("target", [".png", ".jpg", ".webp", ".tif"])
def test_xmp_is_carried_with_its_orientation_upright(tmp_path, kit, tiny_model, source, target):
    """Rights, captions and keywords live in XMP; it used to be dropped. Its orientation says 1
    in the output, as the EXIF's does: the pixels were turned upright when read."""
    from restore.runtime.image_meta import XMP_TAG

    picture, exif = tagged(kit, orientation=6)
    src = tmp_path / f"in{source}"
    carriers = {".tif": {"tiffinfo": {XMP_TAG: XMP}}, ".png": {"pnginfo": PngInfo()}}
    carriers[".png"]["pnginfo"].add_itxt("XML:com.adobe.xmp", XMP.decode())
    picture.save(src, exif=exif, **carriers.get(source, {"xmp": XMP}))
    out = tmp_path / f"out{target}"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0 and result.stderr == "", result.stderr
    with Image.open(out) as restored:
        xmp = restored.tag_v2.get(XMP_TAG) if target == ".tif" else restored.info.get("xmp")
        assert restored.size == (30, 50)
    assert xmp == XMP.replace(b'tiff:Orientation="6"', b'tiff:Orientation="1"')


@pytest.mark.parametrize("depth, target, kind", [(8, ".bmp", "BMP"), (16, ".tif", "16-bit TIFF")])
def test_metadata_a_format_cannot_carry_is_said_to_be_dropped(tmp_path, kit, tiny_model, depth, target, kind):
    from restore.runtime.image_meta import ImageInfo
    from restore.runtime.streams import PngStripWriter

    src = tmp_path / "tagged.png"
    if depth == 16:  # a 16-bit PNG with a colour profile
        writer = PngStripWriter(src, (30, 50, 3), np.uint16, info=ImageInfo(icc_profile=SRGB))
        writer[0:30] = kit.noise((30, 50, 3)).astype(np.uint16) * 257
        writer.close()
        said = "colour profile: it is dropped (write .png to keep it)"
    else:
        picture, exif = tagged(kit)
        picture.save(src, exif=exif, icc_profile=SRGB)
        said = "colour profile; EXIF: they are dropped (write .png to keep them)"
    out = tmp_path / f"out{target}"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    assert result.stderr.strip().splitlines() == [f"restore: note: {out}: a {kind} cannot hold the input's {said}"]
    assert out.exists()


def test_png_text_and_a_jpeg_comment_are_carried(tmp_path, kit, tiny_model):
    """A PNG's text chunks (here plain, compressed and UTF-8) come back in a PNG output, a JPEG's
    comment in a JPEG output."""
    chunks = PngInfo()
    chunks.add_text("Author", "Ada")
    chunks.add_text("Comment", "a long note " * 20, zip=True)
    chunks.add_itxt("parameters", "Steps: 30, 日本の写真")
    picture = Image.fromarray(kit.noise((30, 50, 3)))
    picture.save(tmp_path / "in.png", pnginfo=chunks)
    picture.save(tmp_path / "in.jpg", comment=b"scanned 1987, box 12", quality=95)
    for src, out in (("in.png", "out.png"), ("in.jpg", "out.jpg")):
        result = kit.run_cli("restore", "run", tmp_path / src, "-o", tmp_path / out, "--model", tiny_model, "-q")
        assert result.code == 0 and result.stderr == "", result.stderr
    with Image.open(tmp_path / "out.png") as restored:
        assert restored.text == {"Author": "Ada", "Comment": "a long note " * 20, "parameters": "Steps: 30, 日本の写真"}
    with Image.open(tmp_path / "out.jpg") as restored:
        assert restored.info["comment"] == b"scanned 1987, box 12"


def test_a_jpeg_comment_goes_to_a_png_and_png_text_a_jpeg_cannot_hold_is_said(tmp_path, kit, tiny_model):
    """A JPEG's comment is the text "Comment": a PNG keeps it (and a JPEG made from that PNG gets
    it back as its comment); a PNG's other text does not fit a JPEG and is named in one note."""
    picture = Image.fromarray(kit.noise((30, 50, 3)))
    picture.save(tmp_path / "in.jpg", comment="café, box 12".encode(), quality=95)
    chunks = PngInfo()
    chunks.add_text("Author", "Ada")
    chunks.add_text("Comment", "scanned 1987")
    picture.save(tmp_path / "in.png", pnginfo=chunks)
    result = kit.run_cli("restore", "run", tmp_path / "in.jpg", "-o", tmp_path / "out.png", "--model", tiny_model, "-q")
    assert result.code == 0 and result.stderr == "", result.stderr
    with Image.open(tmp_path / "out.png") as restored:
        assert restored.text == {"Comment": "café, box 12"}
    out = tmp_path / "out.jpg"
    result = kit.run_cli("restore", "run", tmp_path / "in.png", "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"restore: note: {out}: a JPG cannot hold the input's text (Author): it is dropped (write .png to keep it)"]
    with Image.open(out) as restored:
        assert restored.info["comment"] == b"scanned 1987"


def png_with_chunks(path, pixels, chunks):
    """``pixels`` saved as a PNG by Pillow, with raw ``chunks`` ((type, data), ...) put after IHDR."""
    import struct
    import zlib

    picture = Image.fromarray(pixels)
    picture.save(path)
    data = path.read_bytes()
    end = 8 + 25  # signature, then IHDR (4 + 4 + 13 + 4 bytes)
    made = b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks)
    path.write_bytes(data[:end] + made + data[end:])


GAMMA_22 = (b"gAMA", (45455).to_bytes(4, "big"))
WIDE_PRIMARIES = (b"cHRM", b"".join(int(v * 100000).to_bytes(4, "big") for v in (0.3127, 0.329, 0.7347, 0.2653, 0.1596, 0.8404, 0.0366, 0.0001)))
HDR10 = (b"cICP", bytes([9, 16, 0, 1]))  # BT.2020 primaries, PQ transfer, full range


@pytest.mark.parametrize("chunks", [[GAMMA_22, WIDE_PRIMARIES], [HDR10], [(b"sRGB", b"\x00"), GAMMA_22]],
                         ids=["gamma-chromaticity", "cicp-hdr", "srgb"])
def test_a_png_s_colour_encoding_is_carried_or_said_to_be_dropped(tmp_path, kit, tiny_model, chunks):
    """gAMA, cHRM, sRGB and cICP say how a PNG's values are colours: a PNG output keeps them as
    they were; a JPEG cannot hold them, which is said, except where an sRGB chunk says the colours
    are what a JPEG's are anyway."""
    from restore.runtime.image_meta import read_info

    src = tmp_path / "in.png"
    again = (chunks[0][0], bytes(len(chunks[0][1])))  # a second chunk of a type: the first one counts
    png_with_chunks(src, kit.noise((30, 50, 3)), chunks + [(b"cLLI", b"\x00" * 5), again])  # and one of a wrong length: left out
    assert read_info(src).colour == tuple(chunks)
    result = kit.run_cli("restore", "run", src, "-o", tmp_path / "out.png", "--model", tiny_model, "-q")
    assert result.code == 0 and result.stderr == "", result.stderr
    assert read_info(tmp_path / "out.png").colour == tuple(chunks)
    with Image.open(tmp_path / "out.png") as restored:
        restored.load()  # Pillow reads the chunks it knows without complaint
        if chunks[0] == GAMMA_22:
            assert restored.info["gamma"] == pytest.approx(0.45455)
    out = tmp_path / "out.jpg"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    names = ", ".join(sorted(k.decode() for k, _ in chunks))
    said = [] if chunks[0][0] == b"sRGB" else [
        f"restore: note: {out}: a JPG cannot hold the input's colour encoding ({names}): it is dropped (write .png to keep it)"]
    assert result.stderr.strip().splitlines() == said


def test_metadata_pillow_finds_damaged_is_said_to_be_left_out(tmp_path, kit, tiny_model):
    """A PNG whose gAMA chunk is cut short: OpenCV reads the pixels, Pillow refuses the chunks, so
    the output carries no metadata, and one note says why."""
    src = tmp_path / "in.png"
    png_with_chunks(src, kit.noise((30, 50, 3)), [(b"gAMA", b"\x00\x01")])
    out = tmp_path / "out.png"
    result = kit.run_cli("restore", "run", src, "-o", out, "--model", tiny_model, "-q")
    assert result.code == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"restore: note: {src}: its metadata cannot be read (Truncated gAMA chunk): the output carries none of it"]
    assert out.exists()
