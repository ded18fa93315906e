"""The simulated camera: it renders real JPEG stills of a room, with a walking figure or smoke, under a timestamp overlay.

A frame is drawn the way a cheap indoor security camera sees it: a high corner view of
a living room (back wall with a door and a window, side walls, a wooden floor, a sofa,
a table, a lamp, a rug), sensor noise, a little vignetting, and an overlay that burns in
the UTC date-time, the device id, the trigger and a frame counter.

Scenes (see `SCENES`):

- ``empty``    the room and nothing else;
- ``intruder`` the door stands open and a dark, hooded figure walks in and across the room;
- ``resident`` a figure in light clothes walks in from the door towards the hall on the left;
- ``smoke``    a glow behind the sofa and grey haze that gathers under the ceiling and
  thickens frame by frame.

The frame index moves the figure along its path (it loops every `WALK_FRAMES` frames) and
thickens the smoke. Everything is drawn from ``random.Random`` streams seeded by the
camera's seed, so the same inputs give the same bytes, on every run.

``python -m simulator.camera OUTDIR`` writes one sample frame per scene, for eyeballing.
"""

import datetime
import io
import math
import os
import random
import statistics
import sys
import tempfile

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

SCENES = ("empty", "intruder", "resident", "smoke")
SIZES = ((640, 480), (320, 240))
DEFAULT_QUALITY = 75
WALK_FRAMES = 8  # a walk crosses the room in this many frames, then starts again

# The scene is laid out on a 640x480 canvas; other sizes scale it.
_BASE_W = 640
_HORIZON_Y = 170  # eye level of the camera, where the floor lines meet
_VANISH_X = 340
_BACK_FLOOR_Y = 300  # where the back wall meets the floor
_SENSOR_NOISE = 4.0  # standard deviation of per-frame sensor noise, in 8-bit levels

_WALLS = ((206, 196, 178), (190, 200, 196), (214, 204, 190), (196, 190, 200))
_FLOORS = ((150, 108, 72), (128, 96, 70), (168, 130, 92))
_SOFAS = ((86, 98, 120), (120, 70, 62), (92, 110, 84), (110, 104, 96))


class Camera:
    """One device's camera: renders JPEG frames of its room and writes them to the flash."""

    def __init__(self, device_id, size=(640, 480), quality=None, seed=0):
        if not isinstance(device_id, str) or not device_id:
            raise ValueError(f"device_id must be a non-empty string, got {device_id!r}")
        size = tuple(size)
        if size not in SIZES:
            raise ValueError(f"unsupported frame size {size!r}; use one of {', '.join(f'{w}x{h}' for w, h in SIZES)}")
        if quality is None:
            quality = DEFAULT_QUALITY
        if not isinstance(quality, int) or not 1 <= quality <= 95:
            raise ValueError(f"JPEG quality must be an int from 1 to 95, got {quality!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.device_id = device_id
        self.size = size
        self.quality = quality
        self.seed = seed
        self._scale = size[0] / _BASE_W
        self._rooms = {}  # door open? -> rendered room, drawn once
        self._vignette = None
        self._font = _font(max(9, round(14 * self._scale)))

    def render(self, scene, frame_index, when, trigger=""):
        """Return one JPEG frame of `scene` at `frame_index`, stamped with `when` (unix seconds, UTC)."""
        if scene not in SCENES:
            raise ValueError(f"unknown scene {scene!r}; use one of {', '.join(SCENES)}")
        if not isinstance(frame_index, int) or frame_index < 0:
            raise ValueError(f"frame_index must be an int >= 0, got {frame_index!r}")
        if not isinstance(when, (int, float)) or not math.isfinite(when):
            raise ValueError(f"when must be unix seconds as a finite number, got {when!r}")
        if not isinstance(trigger, str):
            raise ValueError(f"trigger must be a string, got {trigger!r}")

        img = self._room(door_open=scene == "intruder").copy()
        if scene in ("intruder", "resident"):
            self._draw_walker(img, scene, frame_index)
        elif scene == "smoke":
            self._draw_smoke(img, frame_index)
        img = ImageChops.multiply(img, self._vignette_mask())
        img = self._add_sensor_noise(img, frame_index)
        self._draw_overlay(img, frame_index, when, trigger)

        out = io.BytesIO()
        img.save(out, "JPEG", quality=self.quality)
        return out.getvalue()

    def capture_to(self, path, scene, frame_index, when, trigger=""):
        """Render a frame and write it to `path` atomically (temp file, fsync, rename); return its size."""
        data = self.render(scene, frame_index, when, trigger)
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".capture-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return len(data)

    # --- the room -------------------------------------------------------------------------

    def _p(self, *xy):
        """Scale base-canvas coordinates to this camera's size."""
        s = self._scale
        return [v * s for v in xy]

    def _room(self, door_open):
        if door_open not in self._rooms:
            self._rooms[door_open] = self._draw_room(door_open)
        return self._rooms[door_open]

    def _draw_room(self, door_open):
        rng = random.Random(f"room:{self.seed}")
        wall = rng.choice(_WALLS)
        floor = rng.choice(_FLOORS)
        sofa = rng.choice(_SOFAS)
        w, h = self.size
        p = self._p
        img = Image.new("RGB", self.size, wall)
        d = ImageDraw.Draw(img)

        side = _shade(wall, 0.82)
        d.polygon(p(0, 0, 640, 0, 560, 40, 120, 40), fill=_shade(wall, 1.06))  # ceiling
        d.polygon(p(0, 0, 120, 40, 120, 300, 0, 420), fill=side)  # left wall
        d.polygon(p(560, 40, 640, 0, 640, 430, 560, 300), fill=_shade(wall, 0.9))  # right wall
        d.polygon(p(0, 420, 120, 300, 560, 300, 640, 430, 640, 480, 0, 480), fill=floor)
        # skirting boards
        d.line(p(120, 298, 560, 298), fill=_shade(wall, 0.7), width=max(1, round(4 * self._scale)))
        d.line(p(0, 418, 120, 298), fill=_shade(wall, 0.6), width=max(1, round(4 * self._scale)))
        d.line(p(560, 298, 640, 428), fill=_shade(wall, 0.65), width=max(1, round(4 * self._scale)))
        # floor boards: seams running towards the vanishing point, and cross joints
        for i in range(-14, 26):
            bx = 120 + i * 26
            far = (bx, _BACK_FLOOR_Y)
            k = (480 - _HORIZON_Y) / (_BACK_FLOOR_Y - _HORIZON_Y)
            near = (_VANISH_X + (bx - _VANISH_X) * k, 480)
            d.line(p(*far, *near), fill=_shade(floor, 0.78), width=1)
        for j, y in enumerate((306, 315, 327, 342, 362, 388, 422, 466)):
            for x in range(-40, 700, 90):
                x0 = x + (j % 2) * 45
                d.line(p(x0, y, x0 + 4, y + 3), fill=_shade(floor, 0.8), width=1)

        # rug under the table
        d.polygon(p(40, 410, 140, 350, 330, 350, 350, 430), fill=_shade((150, 60, 55), 1.0))
        d.polygon(p(58, 406, 148, 356, 322, 356, 338, 424), outline=(214, 190, 150), width=max(1, round(3 * self._scale)))

        # the door, left of centre on the back wall
        d.rectangle(p(152, 112, 248, 300), fill=_shade(wall, 0.62))  # frame
        if door_open:
            d.rectangle(p(158, 118, 242, 300), fill=(34, 32, 36))  # dark hall beyond
            d.polygon(p(158, 118, 182, 110, 182, 308, 158, 300), fill=(150, 118, 84))  # door swung in
            d.ellipse(p(174, 206, 180, 214), fill=(200, 180, 90))
        else:
            d.rectangle(p(158, 118, 242, 300), fill=(150, 118, 84))
            for y0, y1 in ((128, 200), (212, 290)):
                d.rectangle(p(168, y0, 232, y1), outline=(124, 96, 66), width=max(1, round(3 * self._scale)))
            d.ellipse(p(226, 206, 234, 214), fill=(200, 180, 90))

        # the window, right of centre, with sky, a tree and curtains
        d.rectangle(p(352, 82, 508, 208), fill=(236, 236, 232))
        sky_top, sky_bottom = (120, 160, 206), (186, 208, 226)
        for y in range(88, 203):
            t = (y - 88) / 115
            d.line(p(358, y, 502, y), fill=_mix(sky_top, sky_bottom, t))
        d.ellipse(p(440, 120, 520, 200), fill=(72, 104, 66))
        d.rectangle(p(470, 180, 478, 203), fill=(84, 64, 48))
        d.rectangle(p(358, 190, 502, 203), fill=(110, 138, 96))  # hedge
        d.line(p(430, 88, 430, 202), fill=(236, 236, 232), width=max(1, round(5 * self._scale)))
        d.line(p(358, 145, 502, 145), fill=(236, 236, 232), width=max(1, round(5 * self._scale)))
        d.rectangle(p(340, 208, 520, 214), fill=(240, 240, 236))  # sill
        curtain = (196, 170, 120)
        d.polygon(p(336, 74, 362, 74, 356, 240, 330, 244), fill=curtain)
        d.polygon(p(498, 74, 524, 74, 530, 244, 504, 240), fill=curtain)
        d.line(p(326, 74, 534, 74), fill=(90, 80, 70), width=max(1, round(3 * self._scale)))

        # a picture on the left wall, a clock on the back wall
        d.polygon(p(34, 120, 86, 110, 86, 170, 34, 186), fill=(96, 74, 54))
        d.polygon(p(40, 126, 80, 118, 80, 164, 40, 178), fill=(120, 150, 170))
        d.polygon(p(40, 160, 60, 140, 80, 156, 80, 164, 40, 178), fill=(90, 120, 80))
        d.ellipse(p(278, 96, 310, 128), fill=(246, 244, 236), outline=(60, 60, 60), width=max(1, round(2 * self._scale)))
        d.line(p(294, 112, 294, 100), fill=(30, 30, 30), width=max(1, round(2 * self._scale)))
        d.line(p(294, 112, 303, 116), fill=(30, 30, 30), width=max(1, round(2 * self._scale)))

        # a floor lamp between door and window
        d.line(p(300, 298, 300, 170), fill=(60, 60, 60), width=max(1, round(3 * self._scale)))
        d.ellipse(p(286, 292, 314, 302), fill=(50, 50, 50))
        d.polygon(p(284, 176, 316, 176, 308, 150, 292, 150), fill=(236, 222, 180))

        # the sofa against the right wall, seen end-on: backrest, seat, front, near arm
        dark, mid, light = _shade(sofa, 0.6), _shade(sofa, 0.8), sofa
        d.polygon(p(560, 318, 636, 440, 636, 352, 560, 262), fill=mid)  # backrest against the wall
        d.polygon(p(560, 292, 636, 390, 598, 410, 512, 306), fill=light)  # seat
        d.polygon(p(512, 306, 598, 410, 598, 442, 512, 330), fill=dark)  # seat front
        d.line(p(536, 298, 620, 400), fill=_shade(sofa, 0.7), width=max(1, round(2 * self._scale)))  # cushion seam
        d.polygon(p(548, 290, 566, 270, 578, 300, 560, 318), fill=(214, 190, 120))  # a cushion
        d.polygon(p(586, 334, 640, 400, 640, 430, 590, 360), fill=_shade(sofa, 0.7))  # shade under backrest
        d.polygon(p(598, 380, 640, 370, 640, 450, 598, 442), fill=_shade(sofa, 0.9))  # near arm, side
        d.polygon(p(590, 368, 640, 356, 640, 372, 598, 382), fill=_shade(sofa, 1.1))  # near arm, top
        d.polygon(p(556, 306, 572, 300, 572, 318, 556, 324), fill=_shade(sofa, 0.9))  # far arm
        d.polygon(p(512, 306, 556, 300, 560, 262, 540, 270), fill=_shade(sofa, 0.95))  # far arm top

        # a coffee table on the rug, and a plant in the left corner
        d.polygon(p(130, 372, 170, 352, 300, 352, 290, 374), fill=(110, 80, 56))
        d.polygon(p(130, 372, 290, 374, 290, 380, 130, 378), fill=(80, 58, 40))
        for x0, y0, y1 in ((136, 378, 408), (284, 380, 410), (170, 356, 386), (296, 356, 384)):
            d.line(p(x0, y0, x0, y1), fill=(70, 50, 36), width=max(1, round(4 * self._scale)))
        d.rectangle(p(200, 346, 222, 356), fill=(220, 220, 214))  # a book
        d.polygon(p(60, 300, 92, 300, 88, 330, 64, 330), fill=(170, 96, 60))
        for angle in range(-70, 80, 18):
            a = math.radians(angle - 90)
            d.line(p(76, 300, 76 + 34 * math.cos(a), 300 + 46 * math.sin(a)), fill=(54, 110, 58), width=max(1, round(5 * self._scale)))

        # soften the drawn edges a little, then add plaster and wood grain texture
        img = img.filter(ImageFilter.GaussianBlur(0.6 * self._scale))
        for cells, sigma in ((8, 3.5), (2, 2.5)):
            tex = _noise_image(rng, (max(1, w // cells), max(1, h // cells)), sigma)
            tex = tex.resize(self.size, Image.BICUBIC)
            img = ImageChops.add(img, Image.merge("RGB", (tex, tex, tex)), 1.0, -128)
        return img

    def _vignette_mask(self):
        if self._vignette is None:
            w, h = self.size
            small = Image.new("L", (64, 48))
            small.putdata([
                round(255 * (1.0 - 0.35 * (((x - 31.5) / 32) ** 2 + ((y - 23.5) / 24) ** 2) / 2))
                for y in range(48) for x in range(64)
            ])
            small = small.resize(self.size, Image.BICUBIC)
            self._vignette = Image.merge("RGB", (small, small, small))
        return self._vignette

    # --- a walking figure -----------------------------------------------------------------

    def _draw_walker(self, img, scene, frame_index):
        step = frame_index % WALK_FRAMES
        t = step / (WALK_FRAMES - 1)
        if scene == "intruder":  # in through the door, across the room towards the sofa
            start, end = (200, 304), (420, 456)
            clothes = {"top": (36, 36, 42), "legs": (28, 28, 32), "head": (40, 40, 46), "skin": (150, 120, 100),
                       "hood": True, "shoes": (20, 20, 20), "bag": (50, 44, 40)}
        else:  # the resident comes in and heads for the hall on the left
            start, end = (210, 304), (90, 452)
            clothes = {"top": (70, 120, 176), "legs": (54, 70, 110), "head": (226, 186, 156), "skin": (226, 186, 156),
                       "hood": False, "shoes": (230, 230, 230), "bag": None}
        # feet move along a straight line on the floor; height follows perspective
        fx = start[0] + (end[0] - start[0]) * t
        fy = start[1] + (end[1] - start[1]) * t
        height = 1.22 * (fy - _HORIZON_Y)
        facing = 1 if end[0] >= start[0] else -1
        phase = frame_index * 1.7

        # draw at 2x into a transparent layer, then scale down for smooth edges
        ss = 2
        k = self._scale * ss
        layer = Image.new("RGBA", (self.size[0] * ss, self.size[1] * ss), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        u = height / 100.0  # one unit = 1% of body height

        def P(dx, dy):  # body coordinates (units, up from the feet) -> layer pixels
            return ((fx + dx * u * facing) * k, (fy - dy * u) * k)

        def limb(a, b, width, fill):
            (x0, y0), (x1, y1) = P(*a), P(*b)
            r = width * u * k / 2
            d.line((x0, y0, x1, y1), fill=fill, width=max(1, round(2 * r)))
            for x, y in ((x0, y0), (x1, y1)):
                d.ellipse((x - r, y - r, x + r, y + r), fill=fill)

        # shadow on the floor
        sx, sy = P(0, 0)
        d.ellipse((sx - 22 * u * k, sy - 4 * u * k, sx + 22 * u * k, sy + 4 * u * k), fill=(0, 0, 0, 90))

        swing = math.sin(phase)
        hip, shoulder = (0, 52), (0, 81)
        knee_f, knee_b = (6 * swing, 27), (-6 * swing, 27)
        foot_f, foot_b = (12 * swing, 1), (-12 * swing, 1)
        back_leg = _shade(clothes["legs"], 0.8)
        limb(hip, knee_b, 8, back_leg)
        limb(knee_b, foot_b, 7, back_leg)
        limb((foot_b[0], 1), (foot_b[0] + 5, 0.5), 5, clothes["shoes"])
        # far arm, behind the torso
        elbow_b, hand_b = (5 * swing, 66), (9 * swing, 50)
        limb((0, 78), elbow_b, 6, _shade(clothes["top"], 0.8))
        limb(elbow_b, hand_b, 5, _shade(clothes["top"], 0.8))
        # torso
        d.polygon([P(-9, 82), P(9, 82), P(8, 50), P(-8, 50)], fill=clothes["top"])
        if clothes["bag"]:
            d.polygon([P(-10, 80), P(-17, 78), P(-18, 56), P(-9, 56)], fill=clothes["bag"])
        limb(hip, knee_f, 8, clothes["legs"])
        limb(knee_f, foot_f, 7, clothes["legs"])
        limb((foot_f[0], 1), (foot_f[0] + 5, 0.5), 5, clothes["shoes"])
        d.polygon([P(-9, 56), P(9, 56), P(9, 48), P(-9, 48)], fill=clothes["legs"])  # hips
        # neck and head
        limb((0, 82), (0, 86), 5, clothes["skin"])
        hx, hy = P(1, 92)
        r = 6.5 * u * k
        if clothes["hood"]:
            d.ellipse((hx - r * 1.15, hy - r * 1.2, hx + r * 1.15, hy + r * 1.1), fill=clothes["head"])
            fx0 = hx + facing * r * 0.35
            d.ellipse((fx0 - r * 0.55, hy - r * 0.5, fx0 + r * 0.55, hy + r * 0.7), fill=(60, 48, 44))
        else:
            d.ellipse((hx - r, hy - r * 1.1, hx + r, hy + r), fill=clothes["skin"])
            d.chord((hx - r * 1.05, hy - r * 1.2, hx + r * 1.05, hy + r * 0.6), 180, 360, fill=(70, 46, 30))  # hair
        # near arm, in front
        elbow_f, hand_f = (-5 * swing, 66), (-9 * swing + 1, 50)
        limb((0, 78), elbow_f, 6, clothes["top"])
        limb(elbow_f, hand_f, 5, clothes["top"])
        limb(hand_f, (hand_f[0], 48), 4.5, clothes["skin"])
        if clothes["hood"]:  # a torch in the intruder's hand
            limb(hand_f, (hand_f[0] + 6, 50), 2.5, (70, 70, 70))

        layer = layer.resize(self.size, Image.LANCZOS)
        img.paste(layer, (0, 0), layer)

    # --- smoke ------------------------------------------------------------------------------

    def _draw_smoke(self, img, frame_index):
        w, h = self.size
        p = self._p
        rng = random.Random(f"smoke:{self.seed}:{frame_index}")
        density = 1.0 - math.exp(-(frame_index + 1) / 5.0)  # 0.18, 0.33, 0.45 ... towards 1

        # a flickering glow behind the sofa where it started
        glow = Image.new("L", self.size, 0)
        gd = ImageDraw.Draw(glow)
        flicker = 0.8 + 0.2 * rng.random()
        gx, gy = 590, 300
        for i, radius in enumerate((70, 50, 30)):
            gd.ellipse(p(gx - radius, gy - radius * 0.8, gx + radius, gy + radius * 0.8), fill=round((60 + 60 * i) * flicker))
        glow = glow.filter(ImageFilter.GaussianBlur(14 * self._scale))
        img.paste(Image.new("RGB", self.size, (255, 150, 60)), (0, 0), glow)

        # haze: cloudy noise, densest under the ceiling, drifting from frame to frame
        clouds = Image.new("L", self.size, 128)
        for cells, sigma in ((80, 40.0), (40, 28.0), (16, 16.0)):
            n = _noise_image(rng, (max(2, w // cells) + 2, max(2, h // cells) + 2), sigma)
            n = n.resize(((max(2, w // cells) + 2) * cells, (max(2, h // cells) + 2) * cells), Image.BICUBIC)
            dx = (frame_index * 7 * cells // 16) % cells
            n = n.crop((dx, 0, dx + w, h))
            clouds = ImageChops.add(clouds, n, 1.0, -128)
        clouds = clouds.filter(ImageFilter.GaussianBlur(3 * self._scale))
        ramp = Image.new("L", (1, 256))
        ramp.putdata([round(255 * min(1.0, max(0.0, 1.0 - (y / 255) * 1.1 + 0.25 * density))) for y in range(256)])
        ramp = ramp.resize(self.size, Image.BILINEAR)
        # alpha = density * (gradient from the ceiling down) * (clouds around 0.5..1)
        alpha = ImageChops.multiply(ramp, clouds.point(lambda v: min(255, max(0, v + 60))))
        alpha = alpha.point(lambda v: round(min(235, v * (0.25 + 1.05 * density))))
        smoke_colour = (186, 184, 180) if density < 0.6 else (150, 148, 146)
        img.paste(Image.new("RGB", self.size, smoke_colour), (0, 0), alpha)

    # --- sensor and overlay -----------------------------------------------------------------

    def _add_sensor_noise(self, img, frame_index):
        rng = random.Random(f"sensor:{self.seed}:{frame_index}")
        luma = _noise_image(rng, self.size, _SENSOR_NOISE)
        chroma = _noise_image(rng, (self.size[0] // 2, self.size[1] // 2), _SENSOR_NOISE / 2).resize(self.size)
        noise = Image.merge("RGB", (ImageChops.add(luma, chroma, 1.0, -128), luma, ImageChops.subtract(luma, chroma, 1.0, 128)))
        return ImageChops.add(img, noise, 1.0, -128)

    def _draw_overlay(self, img, frame_index, when, trigger):
        try:
            stamp = datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"when={when!r} is not a date the overlay can show: {exc}") from None
        w, h = self.size
        pad = max(2, round(4 * self._scale))
        d = ImageDraw.Draw(img, "RGBA")
        self._label(d, (pad, pad), stamp, anchor="la")
        self._label(d, (w - pad, pad), self.device_id, anchor="ra")
        if trigger:
            self._label(d, (pad, h - pad), trigger.upper(), anchor="ld")
        self._label(d, (w - pad, h - pad), f"FRAME {frame_index:04d}", anchor="rd")

    def _label(self, d, xy, text, anchor):
        box = d.textbbox(xy, text, font=self._font, anchor=anchor)
        m = max(1, round(3 * self._scale))
        d.rectangle((box[0] - m, box[1] - m, box[2] + m, box[3] + m), fill=(0, 0, 0, 140))
        d.text(xy, text, font=self._font, anchor=anchor, fill=(255, 255, 255))


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _noise_image(rng, size, sigma):
    """A greyscale image of normal noise around 128, drawn from `rng` (reproducible, unlike effect_noise)."""
    w, h = size
    lut = _gauss_lut(sigma)
    return Image.frombytes("L", (w, h), rng.randbytes(w * h)).point(lut)


_LUTS = {}


def _gauss_lut(sigma):
    if sigma not in _LUTS:
        nd = statistics.NormalDist(128, sigma)
        _LUTS[sigma] = [min(255, max(0, round(nd.inv_cdf((u + 0.5) / 256)))) for u in range(256)]
    return _LUTS[sigma]


def _shade(colour, f):
    return tuple(min(255, max(0, round(c * f))) for c in colour)


def _mix(a, b, t):
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))


def _write_samples(outdir):
    os.makedirs(outdir, exist_ok=True)
    when = 1_718_000_000.0
    triggers = {"empty": "arm", "intruder": "intrusion", "resident": "disarm", "smoke": "smoke"}
    for size in SIZES:
        cam = Camera("VC-0001", size=size)
        for scene in SCENES:
            frame = 3 if scene != "smoke" else 6
            path = os.path.join(outdir, f"{scene}-{size[0]}x{size[1]}.jpg")
            n = cam.capture_to(path, scene, frame, when + frame, triggers[scene])
            print(f"{path}  {n} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m simulator.camera OUTDIR")
    _write_samples(sys.argv[1])
