"""Draw the Weightscope app icon and write it in every size and format the platforms want.

A magnifying glass over a bell-shaped histogram: looking at the distribution of
weights. Drawn with QPainter on a QImage (no window, no extra dependency), then
packed into ``weightscope.ico`` (Windows) and ``weightscope.icns`` (macOS) in
plain Python, since both are simple containers of PNG images.

Run ``python resources/icons/make_icons.py`` to regenerate the committed files.
"""

from __future__ import annotations

import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# icns chunk type -> pixel size (PNG payloads; the @2x types reuse the larger images)
ICNS_CHUNKS = (("icp4", 16), ("icp5", 32), ("icp6", 64), ("ic07", 128), ("ic08", 256), ("ic09", 512),
               ("ic10", 1024), ("ic11", 32), ("ic12", 64), ("ic13", 256), ("ic14", 512))


def draw_icon(size: int) -> bytes:
    """The icon at ``size`` x ``size`` pixels, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt
    from PySide6.QtGui import QBrush, QColor, QImage, QLinearGradient, QPainter, QPainterPath, QPen

    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)

    # Rounded-square tile, dark blue.
    margin = s * (0.03 if size <= 32 else 0.06)
    tile = QRectF(margin, margin, s - 2 * margin, s - 2 * margin)
    grad = QLinearGradient(QPointF(0, margin), QPointF(0, s - margin))
    grad.setColorAt(0.0, QColor("#2b5486"))
    grad.setColorAt(1.0, QColor("#0f2036"))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(grad))
    p.drawRoundedRect(tile, tile.width() * 0.22, tile.height() * 0.22)

    # The lens: a disc with a histogram of a bell curve inside it.
    cx, cy, r = s * 0.43, s * 0.43, s * 0.29
    lens = QPainterPath()
    lens.addEllipse(QPointF(cx, cy), r, r)
    p.setBrush(QColor("#e9f1fb"))
    p.drawPath(lens)
    p.save()
    p.setClipPath(lens)
    bars = 5 if size <= 24 else 7
    left, width = cx - r * 0.82, r * 1.64
    base = cy + r * 0.55
    bar_w = width / bars
    colors = ("#f29e4c", "#f1c453", "#efea5a", "#83e377", "#16db93", "#0db39e", "#048ba8")
    for i in range(bars):
        z = (i + 0.5 - bars / 2) / (bars / 4.2)
        height = r * 1.15 * math.exp(-0.5 * z * z) + r * 0.06
        color = QColor(colors[round(i * (len(colors) - 1) / max(1, bars - 1))])
        gap = bar_w * (0.12 if size > 24 else 0.0)
        p.setBrush(color)
        p.drawRect(QRectF(left + i * bar_w + gap / 2, base - height, bar_w - gap, height))
    p.restore()

    # Rim and handle.
    rim = QPen(QColor("#ffffff"), max(1.0, s * 0.055))
    p.setPen(rim)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(QPointF(cx, cy), r, r)
    handle = QPen(QColor("#ffffff"), max(1.5, s * 0.11), Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
    p.setPen(handle)
    off = r / math.sqrt(2)
    p.drawLine(QPointF(cx + off * 1.12, cy + off * 1.12), QPointF(s * 0.82, s * 0.82))
    p.end()

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico whose entries are PNG images (supported since Windows Vista)."""
    sizes = [sz for sz in ICO_SIZES if sz in pngs]
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for sz in sizes:
        data = pngs[sz]
        dim = 0 if sz >= 256 else sz  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return header + entries + blobs


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns: 'icns' + total length, then (type, length, PNG) chunks, all big-endian."""
    body = b""
    for kind, sz in ICNS_CHUNKS:
        data = pngs[sz]
        body += kind.encode("ascii") + struct.pack(">I", 8 + len(data)) + data
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main(out: str = HERE) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    pngs = {size: draw_icon(size) for size in PNG_SIZES}
    for size, data in pngs.items():
        with open(os.path.join(out, f"weightscope-{size}.png"), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "weightscope.ico"), "wb") as f:
        f.write(ico_bytes(pngs))
    with open(os.path.join(out, "weightscope.icns"), "wb") as f:
        f.write(icns_bytes(pngs))
    print(f"wrote {len(pngs)} PNGs, weightscope.ico and weightscope.icns to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else HERE))
