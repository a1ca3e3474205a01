"""Switchable SPADE layers, DARL's SPADE residual block, `spadeify` and a layer registry.

- `SwitchableSPADE`: SPADE modulation with a mask, affine normalization without one.
- `SPADEResBlock`: the residual block of DARL's generator (checkpoint-compatible names).
- `prepare_segmap`: validate a mask/label map and make a float one-hot map at a size.
- `spadeify` / `SpadeifiedModel`: convert any generator's norms into S-SPADE layers and call it
  with or without a mask.
- `SegmapContext`: the per-thread segmap a wrapper hands to the S-SPADE layers bound to it.
- `create_layer` / `list_layers` / `register_layer`: build layers by name.
"""

from darlkit.layers.context import SegmapContext
from darlkit.layers.registry import create_layer, list_layers, register_layer
from darlkit.layers.resblock import SPADEResBlock
from darlkit.layers.segmap import is_label_map, prepare_segmap
from darlkit.layers.spade import ACTIVATIONS, PARAM_FREE_NORMS, SwitchableSPADE, default_num_groups
from darlkit.layers.conversion import NORM_TYPES, SpadeifiedModel, spadeify

register_layer("switchable_spade", "sspade", "s_spade")(SwitchableSPADE)
register_layer("spade_resblock", "spade_res_block")(SPADEResBlock)

__all__ = [
    "SwitchableSPADE",
    "SPADEResBlock",
    "SpadeifiedModel",
    "spadeify",
    "SegmapContext",
    "prepare_segmap",
    "is_label_map",
    "default_num_groups",
    "create_layer",
    "list_layers",
    "register_layer",
    "PARAM_FREE_NORMS",
    "ACTIVATIONS",
    "NORM_TYPES",
]
