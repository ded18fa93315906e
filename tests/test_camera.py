"""The simulated camera renders real, plausible JPEG stills: right size, right bytes, a moving figure, thickening smoke."""

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageStat

from simulator.camera import SCENES, Camera

WHEN = 1_718_000_000.0  # 2024-06-10 06:13:20 UTC
MIN_BYTES, MAX_BYTES = 20 * 1024, 60_000  # "20-60 KB", read strictly at both ends


def decode(data):
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize("size", [(640, 480), (320, 240)])
@pytest.mark.parametrize("scene", SCENES)
def test_every_scene_is_a_valid_jpeg_of_the_requested_size(scene, size):
    data = Camera("VC-0001", size=size).render(scene, 2, WHEN, "intrusion")
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    img = decode(data)
    assert img.format == "JPEG"
    assert img.size == size
    assert img.mode == "RGB"


@pytest.mark.parametrize("scene", SCENES)
def test_a_full_size_frame_weighs_like_a_real_camera_still(scene):
    cam = Camera("VC-0001")
    for frame in (0, 1, 3, 5, 7, 12, 30):
        n = len(cam.render(scene, frame, WHEN + frame, "intrusion"))
        assert MIN_BYTES <= n <= MAX_BYTES, f"{scene} frame {frame}: {n} bytes"


@pytest.mark.parametrize("scene", SCENES)
def test_a_small_frame_is_smaller_than_a_full_one(scene):
    big = Camera("VC-0001").render(scene, 3, WHEN)
    small = Camera("VC-0001", size=(320, 240)).render(scene, 3, WHEN)
    assert 4_000 < len(small) < len(big)


@settings(max_examples=25, deadline=None)
@given(
    scene=st.sampled_from(SCENES),
    frame=st.integers(min_value=0, max_value=100_000),
    when=st.floats(min_value=0, max_value=4_000_000_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_any_frame_at_any_time_stays_in_the_size_budget(scene, frame, when, seed):
    n = len(Camera("VC-0001", seed=seed).render(scene, frame, when, "smoke"))
    assert MIN_BYTES <= n <= MAX_BYTES


def test_same_seed_and_inputs_give_the_same_bytes():
    a = Camera("VC-0001", seed=7)
    b = Camera("VC-0001", seed=7)
    for scene in SCENES:
        assert a.render(scene, 4, WHEN, "disarm") == b.render(scene, 4, WHEN, "disarm")
        assert a.render(scene, 4, WHEN, "disarm") == a.render(scene, 4, WHEN, "disarm")  # the room cache changes nothing


def test_a_different_seed_gives_a_different_frame():
    assert Camera("VC-0001", seed=1).render("empty", 0, WHEN) != Camera("VC-0001", seed=2).render("empty", 0, WHEN)


@pytest.mark.parametrize("scene", SCENES)
def test_frames_differ_from_one_index_to_the_next(scene):
    cam = Camera("VC-0001")
    frames = [cam.render(scene, i, WHEN) for i in range(6)]
    assert len(set(frames)) == len(frames)


def test_the_timestamp_is_burned_in():
    cam = Camera("VC-0001")
    a, b = cam.render("empty", 0, WHEN), cam.render("empty", 0, WHEN + 1)
    assert a != b
    # only the top-left stamp changes
    diff = ImageChops.difference(decode(a), decode(b)).convert("L").point(lambda v: 255 if v > 40 else 0)
    left, top, right, bottom = diff.getbbox()
    assert right < 640 // 2 and bottom < 40


def test_device_id_and_trigger_change_the_overlay():
    base = Camera("VC-0001").render("empty", 0, WHEN, "arm")
    assert Camera("VC-0002").render("empty", 0, WHEN, "arm") != base
    assert Camera("VC-0001").render("empty", 0, WHEN, "disarm") != base


def figure_box(scene, frame):
    """Where a figure stands in a frame: the box of pixels that differ strongly from the empty room."""
    cam = Camera("VC-0001")
    diff = ImageChops.difference(decode(cam.render(scene, frame, WHEN)), decode(cam.render("empty", frame, WHEN)))
    return diff.convert("L").point(lambda v: 255 if v > 60 else 0).getbbox()


@pytest.mark.parametrize("scene", ["intruder", "resident"])
def test_the_figure_walks_towards_the_camera(scene):
    boxes = [figure_box(scene, frame) for frame in (0, 3, 6)]
    assert all(boxes)
    feet = [box[3] for box in boxes]
    heights = [box[3] - box[1] for box in boxes]
    assert feet[0] < feet[1] < feet[2], f"feet at {feet}"
    assert heights[0] < heights[2], f"heights {heights}"  # nearer looks taller


def test_a_resident_frame_is_the_empty_room_plus_a_standing_person():
    box = figure_box("resident", 3)  # the door stays shut, so only the figure differs
    width, height = box[2] - box[0], box[3] - box[1]
    assert width < 200 and height > 150 and height > width


def upper_contrast(frame):
    img = decode(Camera("VC-0001").render("smoke", frame, WHEN)).convert("L")
    return ImageStat.Stat(img.crop((0, 40, 640, 240))).stddev[0]


def test_smoke_thickens_and_washes_out_the_room():
    clear = ImageStat.Stat(decode(Camera("VC-0001").render("empty", 0, WHEN)).convert("L").crop((0, 40, 640, 240))).stddev[0]
    contrast = [upper_contrast(frame) for frame in (0, 4, 10)]
    assert clear > contrast[0] > contrast[1] > contrast[2], f"clear {clear:.1f}, smoke {contrast}"


def test_capture_writes_the_frame_atomically_and_returns_its_size(tmp_path):
    cam = Camera("VC-0001")
    path = tmp_path / "frame-0001.jpg"
    n = cam.capture_to(path, "intruder", 1, WHEN, "intrusion")
    assert n == path.stat().st_size
    assert path.read_bytes() == cam.render("intruder", 1, WHEN, "intrusion")
    assert os.listdir(tmp_path) == ["frame-0001.jpg"]  # no temp file left behind


def test_a_failed_capture_leaves_nothing_on_the_flash(tmp_path):
    with pytest.raises(ValueError):
        Camera("VC-0001").capture_to(tmp_path / "x.jpg", "fire", 0, WHEN)
    assert os.listdir(tmp_path) == []


def test_capture_replaces_an_older_frame_at_the_same_path(tmp_path):
    path = tmp_path / "latest.jpg"
    path.write_bytes(b"old")
    n = Camera("VC-0001").capture_to(path, "empty", 0, WHEN)
    assert path.stat().st_size == n and path.read_bytes()[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"size": (800, 600)}, "800"),
        ({"size": (480, 640)}, "640x480"),
        ({"quality": 0}, "quality"),
        ({"quality": 100}, "quality"),
    ],
)
def test_bad_camera_settings_are_refused_with_a_clear_error(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Camera("VC-0001", **kwargs)


def test_an_empty_device_id_is_refused():
    with pytest.raises(ValueError, match="device_id"):
        Camera("")


@pytest.mark.parametrize(
    "args, words",
    [
        (("fire", 0, WHEN), "unknown scene 'fire'.*empty, intruder, resident, smoke"),
        (("empty", -1, WHEN), "frame_index"),
        (("empty", 0, float("nan")), "when"),
        (("empty", 0, 1e20), "when"),
    ],
)
def test_bad_render_requests_are_refused_with_a_clear_error(args, words):
    with pytest.raises(ValueError, match=words):
        Camera("VC-0001").render(*args)


def test_the_sample_helper_writes_one_frame_per_scene(tmp_path):
    from simulator.camera import _write_samples

    _write_samples(str(tmp_path))
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(f"{scene}-{w}x{h}.jpg" for scene in SCENES for w, h in [(640, 480), (320, 240)])
