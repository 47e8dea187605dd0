"""The synthetic abdomen around the pancreas: a template of organs, vessels and bowel, jittered per case.

Positions are in mm relative to the pancreatic neck, written ``(x, y, z)`` in patient LPS (+x left,
+y posterior, +z superior) for readability and turned into ``(z, y, x)`` for the arrays. The pancreas is
a tube along a smooth head-neck-body-tail curve; the splenic vein runs along its posterior surface,
the splenic artery along its upper border, the SMV/SMA behind the neck, the duodenum around the head,
the spleen at the tail tip. Tissues are painted as ids into a ``(Z, Y, X)`` uint8 map, later
turned into HU by a lookup table (:data:`TISSUES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastpanc.data.synth_shapes import curve, rotation

# name: (HU without contrast, HU gain per unit of enhancement, texture amplitude HU)
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (-1000.0, 0.0, 0.0),
    "fat": (-100.0, 0.0, 10.0),
    "muscle": (48.0, 12.0, 6.0),
    "cortical_bone": (750.0, 0.0, 80.0),
    "cancellous_bone": (230.0, 0.0, 45.0),
    "liver": (58.0, 55.0, 5.0),
    "spleen": (48.0, 70.0, 5.0),
    "kidney_cortex": (35.0, 150.0, 8.0),
    "kidney_medulla": (32.0, 70.0, 8.0),
    "bowel_wall": (42.0, 60.0, 6.0),
    "fluid": (12.0, 0.0, 4.0),
    "gas": (-980.0, 0.0, 15.0),
    "feces": (-60.0, 0.0, 110.0),
    "bile": (5.0, 0.0, 3.0),
    "artery": (42.0, 175.0, 5.0),
    "vein": (42.0, 125.0, 5.0),
    "ivc": (42.0, 90.0, 12.0),
    "pancreas": (0.0, 0.0, 9.0),  # HU drawn per case (see synth.py)
}
TISSUE_ID = {name: i for i, name in enumerate(TISSUES)}

# pancreas centre line from the uncinate process (s = 0) through head, neck (origin) and body to the tail tip
PANCREAS_CONTROL = np.array(
    [(-14, 30, -36), (-32, 14, -20), (-22, 2, -5), (0, 0, 0), (35, 18, 10), (60, 38, 22), (76, 58, 32)],
    dtype=np.float64,
)
PANCREAS_RADIUS = (
    np.array([0.0, 0.12, 0.28, 0.42, 0.65, 0.88, 1.0]),
    np.array([7, 13, 12, 7.5, 9.5, 8.5, 4.5]),
)
PANCREAS_AP_STRETCH = 1.25  # the gland is flatter front to back
NECK_S = 0.42
TUBE_VOLUME_GAIN = 1.12  # rendered / analytic volume of the lobulated tube (measured on generated masks)


def zyx(points_xyz) -> np.ndarray:
    """``(..., 3)`` (x, y, z) -> (z, y, x)."""
    return np.asarray(points_xyz, dtype=np.float64)[..., ::-1].copy()


@dataclass
class Shape:
    """One painted structure: a tube or an ellipsoid (optionally hollow) of a tissue."""

    kind: str  # "tube" or "ellipsoid"
    tissue: str
    points: np.ndarray | None = None  # tube: (K, 3) zyx mm
    radii: np.ndarray | None = None  # tube: (K,)
    centre: np.ndarray | None = None  # ellipsoid: (3,) zyx
    semi: np.ndarray | None = None  # ellipsoid: (3,)
    rot: np.ndarray | None = None  # ellipsoid: (3, 3)
    wall_mm: float = 0.0  # > 0: hollow; the lumen holds `lumen`, with gas where a random field is high
    lumen: str = "fluid"
    gas_fraction: float = 0.0  # share of the lumen that is gas (anterior first: the patient lies supine)
    metric: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass
class Anatomy:
    """One case's anatomy: the pancreas centre line and the other structures, in painting order."""

    pancreas_points: np.ndarray  # (K, 3) zyx mm
    pancreas_radii: np.ndarray  # (K,)
    pancreas_s: np.ndarray  # (K,) normalised arc length, 0 uncinate .. 1 tail tip
    shapes: list[Shape] = field(default_factory=list)
    body_semi_xy: tuple[float, float] = (165.0, 130.0)
    body_centre_xy: tuple[float, float] = (0.0, 35.0)

    def pancreas_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (zyx mm) of the pancreas tube, lobulation included."""
        reach = self.pancreas_radii[:, None] * 1.15 / np.array([1.0, PANCREAS_AP_STRETCH, 1.0])
        return (self.pancreas_points - reach).min(0), (self.pancreas_points + reach).max(0)


def _radius_profile(s: np.ndarray) -> np.ndarray:
    return np.interp(s, *PANCREAS_RADIUS)


def principal_extent(points: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Principal axis of a tube as the real statistics measure it on a mask (volume-weighted).

    Returns:
        ``(centre (3,), axis (3,) pointing head -> tail, lo, hi)``: the tube spans ``[lo, hi]`` mm
        along ``axis`` measured from ``centre``.
    """
    w = np.square(radii)
    centre = (points * w[:, None]).sum(0) / w.sum()
    d = points - centre
    cov = (d * w[:, None]).T @ d / w.sum()
    axis = np.linalg.eigh(cov)[1][:, -1]
    if (points[-1] - points[0]) @ axis < 0:
        axis = -axis
    proj = d @ axis
    return centre, axis, float((proj - radii).min()), float((proj + radii).max())


def _tube(
    rng: np.random.Generator,
    rot: np.ndarray,
    control_xyz,
    radius: float,
    tissue: str,
    jitter: float = 3.0,
    **kw,
) -> Shape:
    control = zyx(control_xyz) + rng.normal(0.0, jitter, (len(control_xyz), 3))
    points, _ = curve(control @ rot.T, step_mm=max(0.8, radius * 0.4))
    r = radius * rng.uniform(0.85, 1.15)
    return Shape("tube", tissue, points=points, radii=np.full(len(points), r), **kw)


def _ellipsoid(
    rng: np.random.Generator, rot: np.ndarray, centre_xyz, semi_xyz, tissue: str, angles=(0, 0, 0), **kw
) -> Shape:
    centre = zyx(centre_xyz) + rng.normal(0.0, 4.0, 3)
    semi = zyx(semi_xyz) * rng.uniform(0.85, 1.15, 3)
    local = rotation(tuple(np.asarray(angles) + rng.normal(0.0, 0.08, 3)))
    return Shape("ellipsoid", tissue, centre=centre @ rot.T, semi=semi, rot=rot @ local, **kw)


def sample_anatomy(rng: np.random.Generator, pancreas_length_mm: float, pancreas_ml: float) -> Anatomy:
    """Draw one case's anatomy around a pancreas of about the given length (principal axis) and volume."""
    rot = rotation(tuple(rng.normal(0.0, 0.06, 3)))
    control = zyx(PANCREAS_CONTROL) + rng.normal(0.0, 3.0, PANCREAS_CONTROL.shape)
    control[3] = 0.0  # the neck stays at the origin
    pts, s = curve(control, step_mm=1.5)
    radii = _radius_profile(s) * rng.uniform(0.9, 1.1, 1)
    for _ in range(3):  # length and volume depend on each other through the radii: settle both
        _, _, lo, hi = principal_extent(pts, radii)
        pts = pts * (pancreas_length_mm / (hi - lo))
        step = np.linalg.norm(np.diff(pts, axis=0), axis=1).mean()
        tube_ml = TUBE_VOLUME_GAIN * float((np.pi * radii**2 / PANCREAS_AP_STRETCH).sum() * step) / 1000.0
        radii = radii * float(np.clip(np.sqrt(pancreas_ml / tube_ml), 0.8, 1.25))
    pts = pts @ rot.T
    anatomy = Anatomy(pts, radii, s)
    anatomy.body_semi_xy = (rng.uniform(145, 185), rng.uniform(110, 140))
    head, tail = pts[np.searchsorted(s, 0.15)], pts[-1]
    head_xyz, tail_xyz = head[::-1], tail[::-1]
    add = anatomy.shapes.append

    # retroperitoneum: spine, psoas, kidneys, great vessels
    add(_tube(rng, rot, [(3, 72, 160), (3, 70, 0), (3, 74, -160)], 22.0, "cortical_bone", jitter=1.0))
    add(_tube(rng, rot, [(3, 72, 160), (3, 70, 0), (3, 74, -160)], 19.0, "cancellous_bone", jitter=0.0))
    for side in (-1, 1):
        add(
            _tube(
                rng, rot, [(side * 28, 64, 40), (side * 40, 70, -60), (side * 48, 72, -160)], 17.0, "muscle"
            )
        )
        centre = (side * 72, 62, 2 if side > 0 else -18)
        add(
            _ellipsoid(rng, rot, centre, (26, 22, 52), "kidney_cortex", angles=(0.3 * side, 0.0, 0.15 * side))
        )
        add(
            _ellipsoid(
                rng, rot, centre, (17, 13, 40), "kidney_medulla", angles=(0.3 * side, 0.0, 0.15 * side)
            )
        )
        add(_ellipsoid(rng, rot, (side * 60, 58, centre[2]), (8, 8, 18), "fat"))
    add(_tube(rng, rot, [(12, 45, 160), (12, 44, 0), (10, 46, -160)], 11.0, "artery", jitter=1.5))
    add(
        _tube(
            rng,
            rot,
            [(-26, 42, 160), (-25, 40, 0), (-22, 44, -160)],
            11.0,
            "ivc",
            jitter=1.5,
            metric=(1.0, 1.4, 1.0),
        )
    )
    add(_tube(rng, rot, [(70, 52, 0), (30, 36, 5), (12, 28, 6), (-24, 40, 6)], 4.5, "vein", jitter=1.5))

    # intraperitoneal organs
    add(_ellipsoid(rng, rot, (-88, 12, 58), (85, 80, 75), "liver", angles=(0.2, 0.0, 0.1)))
    add(_ellipsoid(rng, rot, tail_xyz + (28, 8, 28), (28, 42, 55), "spleen", angles=(0.5, 0.2, 0.0)))
    add(
        _ellipsoid(
            rng,
            rot,
            (-52, -36, 2),
            (14, 14, 32),
            "bowel_wall",
            angles=(0.4, 0.3, 0.0),
            wall_mm=2.0,
            lumen="bile",
        )
    )
    add(
        _ellipsoid(
            rng,
            rot,
            (52, -42, 48),
            (40, 32, 55),
            "bowel_wall",
            angles=(-0.5, 0.0, 0.3),
            wall_mm=4.0,
            gas_fraction=rng.uniform(0.1, 0.4),
        )
    )
    add(
        _tube(
            rng,
            rot,
            [(42, -46, 22), (12, -42, 10), (-14, -30, 14)],
            15.0,
            "bowel_wall",
            wall_mm=4.0,
            gas_fraction=0.1,
        )
    )
    duodenum = np.array(
        [
            (-14, -30, 14),
            (-40, -20, 14),
            (-55, 0, 4),
            (-58, 10, -25),
            (-45, 24, -48),
            (-10, 28, -58),
            (20, 26, -52),
            (35, 15, -35),
            (30, 5, -15),
        ],
        dtype=np.float64,
    )
    duodenum[:6] += (head_xyz - zyx(PANCREAS_CONTROL[1])[::-1]) * 0.8
    add(_tube(rng, rot, duodenum, 10.0, "bowel_wall", wall_mm=2.5, gas_fraction=rng.uniform(0.0, 0.25)))
    add(
        _tube(
            rng,
            rot,
            [(-95, -30, 15), (-45, -72, -15), (15, -78, -10), (65, -62, 15), (95, -15, 40)],
            22.0,
            "bowel_wall",
            wall_mm=3.0,
            lumen="feces",
            gas_fraction=rng.uniform(0.2, 0.5),
        )
    )
    for _ in range(rng.integers(3, 7)):
        start = rng.uniform((-10, -60, -95), (85, 10, -25))
        loop = start + np.cumsum(rng.normal(0.0, 18.0, (5, 3)), axis=0)
        add(
            _tube(
                rng, rot, loop, 11.0, "bowel_wall", jitter=0.0, wall_mm=2.0, gas_fraction=rng.uniform(0, 0.3)
            )
        )

    # vessels around the pancreas
    add(
        _tube(
            rng,
            rot,
            [(12, 36, 28), (10, 22, 10), (8, 16, -6), (6, 13, -45), (5, 10, -160)],
            3.5,
            "artery",
            jitter=1.0,
        )
    )
    add(_tube(rng, rot, [(12, 36, 30), (-15, 18, 28), (-45, 15, 40)], 2.5, "artery", jitter=1.5))
    add(_tube(rng, rot, [(-9, 6, -160), (-9, 7, -40), (-6, 10, -6), (-5, 11, 3)], 5.5, "vein", jitter=1.0))
    add(_tube(rng, rot, [(-5, 11, 3), (-25, 13, 20), (-45, 16, 40), (-62, 16, 56)], 7.0, "vein", jitter=1.5))
    body = s >= NECK_S - 0.03
    off_y = radii[body] / PANCREAS_AP_STRETCH + 6.0
    splenic_v = pts[body] + (rot @ np.array([0.0, 1.0, 0.0]))[None, :] * off_y[:, None]
    splenic_v = np.concatenate([zyx([(-5, 11, 3)]) @ rot.T, splenic_v, (tail + rot @ zyx((18, 8, 16)))[None]])
    v_pts, _ = curve(splenic_v[:: max(1, len(splenic_v) // 8)], step_mm=1.5)
    anatomy.shapes.append(
        Shape("tube", "vein", points=v_pts, radii=np.full(len(v_pts), rng.uniform(3.8, 5.2)))
    )
    upper = s >= 0.45
    wiggle = 3.0 * np.sin(np.linspace(0, rng.uniform(4, 8) * np.pi, upper.sum()))
    a_pts = pts[upper] + (rot @ zyx((0, 0, 1.0)))[None] * (radii[upper] + 4.0 + wiggle)[:, None]
    a_pts = np.concatenate([zyx([(12, 36, 30)]) @ rot.T, a_pts[:: max(1, len(a_pts) // 10)]])
    a_pts, _ = curve(a_pts, step_mm=1.0)
    anatomy.shapes.append(
        Shape("tube", "artery", points=a_pts, radii=np.full(len(a_pts), rng.uniform(2.0, 3.0)))
    )
    for _ in range(rng.integers(4, 9)):  # mesenteric branches in the fat below the pancreas
        start = zyx((rng.uniform(-15, 15), rng.uniform(0, 12), rng.uniform(-70, -20)))
        branch = start + np.cumsum(rng.normal((-6, -8, 0), 8.0, (4, 3)), axis=0)
        anatomy.shapes.append(
            _tube(
                rng,
                rot,
                branch[:, ::-1],
                rng.uniform(0.9, 2.0),
                "vein" if rng.random() < 0.5 else "artery",
                jitter=0.0,
            )
        )
    return anatomy
