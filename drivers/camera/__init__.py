"""Frame sources for the QR scanner: a simulated camera for drills and tests, image
folders and video files for replaying captures, a V4L2 (USB) camera, a Raspberry Pi
camera module through picamera2, and ``SupervisedCamera``, the watchdog that
reopens a live camera that stalled or was unplugged; one module each, and
``render`` for the frames a simulation shows.

Every source returns 2-D uint8 greyscale frames from ``read(timeout)``, or None when
no frame arrived in time. Raspberry Pi CSI modules are not reachable through OpenCV
(libcamera): ``Picamera2Camera`` reads them.
"""
from __future__ import annotations

import os

# A stalled V4L2 camera makes each OpenCV read wait 10 s by default (value in
# seconds). OpenCV reads the variable once per process, at the first V4L2 frame
# wait -- not at import -- so setting it here works even if cv2 is already imported,
# unless some V4L2 capture has already waited for a frame in this process. An
# operator's own setting wins (setdefault).
# Set here, before the modules below import cv2 (and in case this is its first import).
os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "2")

from drivers.camera.images import IMAGE_SUFFIXES, ImageFolderSource  # noqa: E402
from drivers.camera.latest import LatestFrame  # noqa: E402
from drivers.camera.picamera2 import Picamera2Camera  # noqa: E402
from drivers.camera.render import render, render_empty, render_scene  # noqa: E402
from drivers.camera.sim import SimCamera  # noqa: E402
from drivers.camera.supervised import SupervisedCamera  # noqa: E402
from drivers.camera.v4l2 import V4L2Camera, fourcc_name, v4l2_grey  # noqa: E402
from drivers.camera.video import VideoFileSource  # noqa: E402
from drivers.frames import CameraError, FrameSource  # noqa: E402

__all__ = ["IMAGE_SUFFIXES", "CameraError", "FrameSource", "ImageFolderSource", "LatestFrame",
           "Picamera2Camera", "SimCamera", "SupervisedCamera", "V4L2Camera", "VideoFileSource",
           "fourcc_name", "render", "render_empty", "render_scene", "v4l2_grey"]
