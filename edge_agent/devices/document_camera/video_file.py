"""The simulated document camera's video: an MJPG AVI of page-like frames.

Imports nothing of the agent (only OpenCV and NumPy), so ``DocumentCameraSimulator``
can run it as a script in a child interpreter:

    python video_file.py PATH WIDTH HEIGHT FRAMES
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["write_document_video"]


def write_document_video(path: Path, *, width: int, height: int, frames: int = 5) -> Path:
    """Write an MJPG AVI of ``frames`` page-like images (white page, black text lines)."""
    # Imported here so that registering the kind does not load OpenCV (docs/performance.md).
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG video to {path}")
    try:
        for index in range(frames):
            page = np.full((height, width, 3), 235, dtype=np.uint8)
            for line in range(1, 12):
                y = line * height // 13
                cv2.line(page, (width // 10, y), (width * 9 // 10, y), (20, 20, 20), 3)
            cv2.putText(
                page,
                f"page {index}",
                (width // 10, height // 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                max(0.5, width / 800),
                (0, 0, 160),
                2,
            )
            writer.write(page)
    finally:
        writer.release()
    return path


def main(argv: list[str]) -> int:
    """Write the video named on the command line; exit 0, or 2 on bad arguments."""
    if len(argv) != 4:
        print("usage: video_file.py PATH WIDTH HEIGHT FRAMES", file=sys.stderr)
        return 2
    path, width, height, frames = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    write_document_video(path, width=width, height=height, frames=frames)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
