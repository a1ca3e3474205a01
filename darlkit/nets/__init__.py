"""Networks of DARL and its Table 12 baseline, with their reusable blocks.

* ``DiffusionUNet`` -- the diffusion module epsilon_theta (paper Table 4),
* ``SPADEGenerator`` -- the generation module G with S-SPADE blocks (Table 5),
* ``PatchDiscriminator`` -- the 70x70 PatchGAN D_s / D_a,
* ``SSVSGenerator`` -- the SSVS ResNet generator (Table 12 baseline),
* ``init_weights`` -- the release's weight initialisation schemes,
* ``ConfigMixin`` -- ``net.config`` / ``from_config`` / ``save_pretrained`` / ``from_pretrained``,
* ``darlkit.nets.blocks`` -- time embedding, residual, attention and resampling blocks.
"""

from darlkit.nets.blocks import *  # noqa: F403 - its __all__ is re-exported whole (below)
from darlkit.nets.blocks import __all__ as _blocks_names
from darlkit.nets.config import *  # noqa: F403 - its __all__ is re-exported whole (below)
from darlkit.nets.config import __all__ as _config_names
from darlkit.nets.discriminator import PatchDiscriminator
from darlkit.nets.generator import SPADEGenerator
from darlkit.nets.init import INIT_SCHEMES, init_weights
from darlkit.nets.ssvs import ResnetBlock, SSVSGenerator
from darlkit.nets.unet import DiffusionUNet

__all__ = [
    "DiffusionUNet",
    "SPADEGenerator",
    "PatchDiscriminator",
    "SSVSGenerator",
    "ResnetBlock",
    "init_weights",
    "INIT_SCHEMES",
    *_config_names,
    *_blocks_names,
]
