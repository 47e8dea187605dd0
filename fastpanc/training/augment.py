"""Batched data augmentation on the training device (nnU-Net v2's default pipeline, in torch).

Order as nnU-Net: spatial (rotation + scaling + elastic in ONE ``grid_sample``: bilinear for the image,
nearest for the labels), Gaussian noise, Gaussian blur, multiplicative brightness, contrast, low-resolution
simulation, inverted gamma, gamma, mirroring. Decisions (which sample gets which transform, with which
parameter) come from a CPU ``torch.Generator`` seeded per batch; random fields (noise, displacements) from a
generator on the batch's device seeded from it, so a seed gives the same batch on every run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastpanc.training.config import AugmentConfig


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo


def rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """(N, 3) angles in radians about the z, y, x axes -> (N, 3, 3) rotations acting on (z, y, x) vectors."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def mat(rows: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)

    # rotation about z mixes (y, x); about y mixes (z, x); about x mixes (z, y)
    rz = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rx = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def sampling_grid(
    matrices: torch.Tensor, shape: tuple[int, int, int], displacement: torch.Tensor | None = None
) -> torch.Tensor:
    """Grid for ``grid_sample``: output voxel v (centred, voxel units, (z, y, x)) reads input at ``M @ v + d``.

    ``matrices`` (N, 3, 3) act in voxel space; ``displacement`` (N, 3, Z, Y, X) is in normalised units of
    (z, y, x). Returns (N, Z, Y, X, 3) in grid_sample's (x, y, z) order, align_corners=False.
    """
    half = torch.tensor(shape, dtype=torch.float64) / 2
    theta_zyx = torch.diag(1 / half) @ matrices.double() @ torch.diag(half)  # (N, 3, 3) in normalised coords
    theta_xyz = theta_zyx.flip(-1).flip(-2)  # reverse axis order on both sides
    theta = torch.cat([theta_xyz, torch.zeros(len(matrices), 3, 1, dtype=torch.float64)], dim=2)
    device = displacement.device if displacement is not None else "cpu"
    grid = F.affine_grid(theta.float().to(device), [len(matrices), 1, *shape], align_corners=False)
    if displacement is not None:
        grid = grid + displacement.flip(1).permute(
            0, 2, 3, 4, 1
        )  # (N, 3, Z, Y, X) zyx -> (N, Z, Y, X, 3) xyz
    return grid


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, Z, Y, X) with one sigma (voxels) on every spatial axis."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    n, c = x.shape[:2]
    y = x.reshape(n * c, 1, *x.shape[2:])  # (N*C, 1, Z, Y, X)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        y = F.conv3d(F.pad(y, pad, mode="replicate"), k.view(shape))
    return y.reshape(x.shape)


class Augmenter:
    """Apply :class:`AugmentConfig` to a batch ``image`` (B, C, Z, Y, X) float, ``seg`` (B, 1, Z, Y, X) int."""

    def __init__(self, config: AugmentConfig) -> None:
        self.cfg = config

    def __call__(
        self, image: torch.Tensor, seg: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.enabled:
            return image, seg
        if (
            image.ndim != 5
            or seg.ndim != 5
            or image.shape[0] != seg.shape[0]
            or image.shape[2:] != seg.shape[2:]
        ):
            raise ValueError(
                f"expected image (B, C, Z, Y, X) and seg (B, 1, Z, Y, X), got "
                f"{tuple(image.shape)} and {tuple(seg.shape)}"
            )
        g = torch.Generator().manual_seed(int(seed))
        dg = torch.Generator(device=image.device).manual_seed(int(torch.randint(2**62, (1,), generator=g)))
        image, seg = image.clone(), seg.clone()
        self.spatial(image, seg, g, dg)
        self.intensity(image, g, dg)
        self.mirror(image, seg, g)
        return image, seg

    def _pick(self, g: torch.Generator, n: int, p: float) -> torch.Tensor:
        return torch.rand(n, generator=g) < p

    def spatial(
        self, image: torch.Tensor, seg: torch.Tensor, g: torch.Generator, dg: torch.Generator
    ) -> None:
        """Rotation, scaling and elastic deformation in one resampling, in place on the chosen samples."""
        c, b, shape = self.cfg, image.shape[0], tuple(image.shape[2:])
        rot, scl, ela = (
            self._pick(g, b, c.p_rotation),
            self._pick(g, b, c.p_scaling),
            self._pick(g, b, c.p_elastic),
        )
        angles = _uniform(g, 3 * b, *map(math.radians, c.rotation_deg)).view(b, 3) * rot[:, None]
        scales = torch.where(scl, _uniform(g, b, *c.scaling), torch.ones(b, dtype=torch.float64))
        magnitude = _uniform(g, b, *c.elastic_magnitude) * ela
        idx = (rot | scl | ela).nonzero().flatten()
        if idx.numel() == 0:
            return
        mats = rotation_matrices(angles[idx]) * scales[idx, None, None]  # (n, 3, 3)
        disp = None
        if bool(ela.any()):
            coarse = torch.randn(len(idx), 3, *(c.elastic_grid,) * 3, generator=dg, device=image.device)
            coarse = coarse * magnitude[idx].to(image.device, torch.float32).view(-1, 1, 1, 1, 1)
            disp = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)  # (n, 3, Z, Y, X)
        grid = sampling_grid(mats, shape, disp).to(image.device)
        dev_idx = idx.to(image.device)
        img = F.grid_sample(
            image[dev_idx].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        lab = F.grid_sample(
            seg[dev_idx].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        image[dev_idx] = img.to(image.dtype)
        seg[dev_idx] = lab.round().to(seg.dtype)

    def intensity(self, image: torch.Tensor, g: torch.Generator, dg: torch.Generator) -> None:
        """Noise, blur, brightness, contrast, low resolution and gamma, in place."""
        c, b = self.cfg, image.shape[0]
        dev = image.device
        view = (b, 1, 1, 1, 1)

        noise = self._pick(g, b, c.p_noise)
        std = torch.sqrt(_uniform(g, b, *c.noise_variance)) * noise
        if bool(noise.any()):
            image += torch.randn(image.shape, generator=dg, device=dev, dtype=image.dtype) * std.to(
                dev, image.dtype
            ).view(view)
        blur = self._pick(g, b, c.p_blur)
        sigmas = _uniform(g, b, *c.blur_sigma)
        for i in blur.nonzero().flatten().tolist():
            image[i : i + 1] = gaussian_blur(image[i : i + 1], float(sigmas[i]))

        bright = self._pick(g, b, c.p_brightness)
        factor = torch.where(bright, _uniform(g, b, *c.brightness), torch.ones(b, dtype=torch.float64))
        image *= factor.to(dev, image.dtype).view(view)

        contrast = self._pick(g, b, c.p_contrast)
        factor = _uniform(g, b, *c.contrast)
        for i in contrast.nonzero().flatten().tolist():
            x = image[i]  # (C, Z, Y, X)
            dims = (1, 2, 3)
            mean, lo, hi = x.mean(dims, keepdim=True), x.amin(dims, keepdim=True), x.amax(dims, keepdim=True)
            image[i] = torch.clamp((x - mean) * float(factor[i]) + mean, lo, hi)

        lowres = self._pick(g, b, c.p_lowres)
        zoom = _uniform(g, b, *c.lowres_zoom)
        shape = tuple(image.shape[2:])
        for i in lowres.nonzero().flatten().tolist():
            small = [max(1, round(s * float(zoom[i]))) for s in shape]
            down = F.interpolate(image[i : i + 1], size=small, mode="nearest")
            image[i : i + 1] = F.interpolate(down, size=shape, mode="trilinear", align_corners=False)

        for p, invert in ((c.p_gamma_inverted, True), (c.p_gamma, False)):
            chosen = self._pick(g, b, p)
            low_half = torch.rand(b, generator=g) < 0.5
            gammas = torch.where(
                low_half & (c.gamma[0] < 1),
                _uniform(g, b, c.gamma[0], min(1.0, c.gamma[1])),
                _uniform(g, b, max(1.0, c.gamma[0]), c.gamma[1]),
            )
            for i in chosen.nonzero().flatten().tolist():
                image[i] = self._gamma(image[i], float(gammas[i]), invert)

    @staticmethod
    def _gamma(x: torch.Tensor, gamma: float, invert: bool) -> torch.Tensor:
        """nnU-Net's gamma with retained mean and std: x -> ((x - min) / range) ** gamma, rescaled."""
        if invert:
            x = -x
        mean, std = x.mean(), x.std()
        lo, rng = x.min(), (x.max() - x.min()).clamp_min(1e-7)
        y = ((x - lo) / rng) ** gamma * rng + lo
        y = (y - y.mean()) / y.std().clamp_min(1e-7) * std + mean
        return -y if invert else y

    def mirror(self, image: torch.Tensor, seg: torch.Tensor, g: torch.Generator) -> None:
        """Flip each allowed spatial axis with probability ``p_mirror_axis`` per sample, in place."""
        b = image.shape[0]
        for axis in self.cfg.mirror_axes:
            chosen = self._pick(g, b, self.cfg.p_mirror_axis).nonzero().flatten().to(image.device)
            if chosen.numel():
                image[chosen] = image[chosen].flip(2 + axis)
                seg[chosen] = seg[chosen].flip(2 + axis)
