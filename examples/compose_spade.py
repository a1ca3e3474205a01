"""Make a plain pix2pix-style generator mask-switchable with one `spadeify` call.

The generator below is an ordinary ResNet image-to-image network (the CycleGAN/pix2pix
design) written without any knowledge of SPADE. `darlkit.spadeify` replaces its
InstanceNorm layers by switchable SPADE layers, so the same network then runs

- without a mask: exactly the original function (the norms keep their affine weights), and
- with a mask: every norm is modulated by the mask, as in DARL's generator.

Run:

    python examples/compose_spade.py           # 256 x 256, ngf 64, 6 residual blocks
    python examples/compose_spade.py --smoke   # tiny sizes (CI)
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from darlkit import SPADEResBlock, create_layer, list_layers, spadeify


class ResidualBlock(nn.Module):
    """Reflection-padded conv-norm-ReLU-conv-norm residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """pix2pix/CycleGAN ResNet generator: 7x7 stem, 2 downsamplings, residual blocks, 2 upsamplings."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ngf: int = 64, n_blocks: int = 6) -> None:
        super().__init__()

        def norm(c: int) -> nn.Module:
            return nn.InstanceNorm2d(c, affine=True)

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7),
            norm(ngf),
            nn.ReLU(inplace=True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                norm(ngf * mult * 2),
                nn.ReLU(inplace=True),
            ]
        layers += [ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(ngf * mult, ngf * mult // 2, 3, padding=1),
                norm(ngf * mult // 2),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes for a quick check")
    parser.add_argument("--size", type=int, default=None, help="image side (default 256, smoke 32)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    size = args.size or (32 if args.smoke else 256)
    ngf, n_blocks, hidden = (8, 2, 16) if args.smoke else (64, 6, 128)

    generator = ResnetGenerator(ngf=ngf, n_blocks=n_blocks).eval()
    x = torch.rand(1, 1, size, size) * 2 - 1  # an image in [-1, 1]
    with torch.no_grad():
        original = generator(x)

    # One call: every InstanceNorm2d becomes a SwitchableSPADE (the original is not modified).
    switchable = spadeify(generator, label_nc=2, hidden_channels=hidden).eval()
    mask = (torch.rand(1, size, size) > 0.9).long()  # a 0/1 label map at the image size
    with torch.no_grad():
        without_mask = switchable(x)
        with_mask = switchable(x, segmap=mask)

    print(f"registered layers: {', '.join(list_layers())}")
    print(f"input {tuple(x.shape)} -> output {tuple(original.shape)}")
    print(f"plain generator parameters:      {count(generator):,}")
    print(f"spadeified generator parameters: {count(switchable):,} "
          f"({len(switchable.spade_layers)} SwitchableSPADE layers)")
    print(f"no mask   : {tuple(without_mask.shape)}, max |out - original| = "
          f"{(without_mask - original).abs().max().item():.2e}")
    print(f"with mask : {tuple(with_mask.shape)}, mean |out - original| = "
          f"{(with_mask - original).abs().mean().item():.3f}")

    # darlkit's own checkpoint-compatible block, built directly or by name.
    block = SPADEResBlock(4 * ngf, 2 * ngf, label_nc=2, hidden_channels=hidden)
    same = create_layer("spade_resblock", in_channels=4 * ngf, out_channels=2 * ngf, label_nc=2,
                        hidden_channels=hidden)
    feats = torch.randn(1, 4 * ngf, size // 4, size // 4)
    with torch.no_grad():
        y = block(feats, mask)
    print(f"SPADEResBlock {4 * ngf}->{2 * ngf}: {tuple(feats.shape)} -> {tuple(y.shape)}, "
          f"{count(block):,} parameters (create_layer: {count(same):,})")

    ok = (
        torch.allclose(without_mask, original, atol=1e-5)
        and without_mask.shape == with_mask.shape == original.shape
        and y.shape == (1, 2 * ngf, size // 4, size // 4)
    )
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
