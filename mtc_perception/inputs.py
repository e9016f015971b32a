"""What the command lines accept: image and video file types, image folders, sizes (always WIDTHxHEIGHT)."""

from __future__ import annotations

import argparse
from pathlib import Path

IMAGE_EXTS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov")


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def list_images(directory: str | Path, *, what: str = "frames directory") -> list[Path]:
    """Every image under `directory` (recursively, sorted); an error naming the folder when there is none."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{what} {d} does not exist; pass a directory of {'/'.join(IMAGE_EXTS)} images")
    files = sorted(p for p in d.rglob("*") if p.is_file() and is_image(p))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTS)}) under {what} {d}")
    return files


def parse_size(text: str, *, multiple_of: int = 1) -> tuple[int, int]:
    """'1280x720' -> (1280, 720): WIDTHxHEIGHT, the one size convention of every command line."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size {text!r} must be WIDTHxHEIGHT, e.g. 1280x720") from e
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive, e.g. 1280x720")
    if w % multiple_of or h % multiple_of:
        raise argparse.ArgumentTypeError(
            f"size {text!r} must be a multiple of {multiple_of} in both sides, e.g. 320x192 or 640x384"
        )
    return w, h
