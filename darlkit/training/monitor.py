"""``CollapseMonitor``: warns when a run's validations say the segmenter has collapsed.

Adversarial training can end in a segmenter that predicts (almost) no vessels, or vessels
everywhere, while every loss looks finite and calm. Two symptoms are visible at validation time:
the validation Dice stays near zero, and the predicted vessel fraction (share of pixels above
the threshold) leaves the band a vessel tree can occupy. The monitor counts consecutive
validations showing either symptom and reports a collapse once the count reaches ``patience``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = ["CollapseMonitor", "CollapseStatus"]


@dataclass(frozen=True)
class CollapseStatus:
    """The monitor's verdict after one validation.

    Attributes:
        collapsed: True once ``patience`` consecutive validations showed a symptom.
        streak: Number of consecutive validations (ending with this one) showing a symptom.
        reason: Short description of this validation's symptom(s) (``""`` when healthy).
    """

    collapsed: bool
    streak: int
    reason: str


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


class CollapseMonitor:
    """Detects a collapsed segmenter from a sequence of validation results.

    A validation shows a symptom when its mean Dice is below ``min_dice``, or when its mean
    predicted vessel fraction lies outside ``[min_fraction, max_fraction]``. A NaN Dice or
    fraction is a symptom too (a diverged run). ``update`` returns a :class:`CollapseStatus`
    whose ``collapsed`` is True while at least ``patience`` consecutive validations showed a
    symptom; a healthy validation resets the streak.

    The defaults suit vessel segmentation: angiogram vessel trees cover about 3-20 % of the
    pixels (XCAD's test masks: 4-16 %), so a prediction below 0.5 % (nearly empty) or above
    50 % (mostly vessel) is implausible, and a Dice below 0.05 means the masks hardly overlap.

    Args:
        patience: Consecutive symptomatic validations that make a collapse (>= 1).
        min_dice: Dice below this is "near zero", in [0, 1].
        min_fraction: Smallest plausible predicted vessel fraction, in [0, 1).
        max_fraction: Largest plausible predicted vessel fraction, in (min_fraction, 1].

    Raises:
        ValueError: If an option is out of range.
        TypeError: If an option has the wrong type.

    Example::

        monitor = CollapseMonitor(patience=3)
        for dice, fraction in [(0.01, 0.001)] * 3:
            status = monitor.update(dice, fraction)
        assert status.collapsed
    """

    def __init__(
        self,
        patience: int = 3,
        min_dice: float = 0.05,
        min_fraction: float = 0.005,
        max_fraction: float = 0.5,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral):
            raise TypeError(f"patience must be an int, got {type(patience).__name__}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        min_dice = _real(min_dice, "min_dice")
        min_fraction = _real(min_fraction, "min_fraction")
        max_fraction = _real(max_fraction, "max_fraction")
        if not 0.0 <= min_dice <= 1.0:
            raise ValueError(f"min_dice must be in [0, 1], got {min_dice}")
        if not 0.0 <= min_fraction < 1.0:
            raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
        if not min_fraction < max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in (min_fraction={min_fraction}, 1], got {max_fraction}")
        self.patience = int(patience)
        self.min_dice = min_dice
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction
        self.streak = 0

    def __repr__(self) -> str:
        return (
            f"CollapseMonitor(patience={self.patience}, min_dice={self.min_dice}, "
            f"min_fraction={self.min_fraction}, max_fraction={self.max_fraction}, streak={self.streak})"
        )

    def symptoms(self, dice: float, vessel_fraction: float) -> str:
        """The symptoms of one validation, without updating the streak.

        Args:
            dice: Mean validation Dice, in [0, 1] (NaN counts as a symptom).
            vessel_fraction: Mean share of pixels predicted as vessel, in [0, 1] (NaN: symptom).

        Returns:
            ``""`` when healthy, else a ``"; "``-joined description such as
            ``"dice 0.012 < 0.05; vessel fraction 0.0003 < 0.005"``.
        """
        dice = _real(dice, "dice")
        vessel_fraction = _real(vessel_fraction, "vessel_fraction")
        found = []
        if math.isnan(dice) or dice < self.min_dice:
            found.append(f"dice {dice:.3f} < {self.min_dice:g}")
        if math.isnan(vessel_fraction) or vessel_fraction < self.min_fraction:
            found.append(f"vessel fraction {vessel_fraction:.4f} < {self.min_fraction:g}")
        elif vessel_fraction > self.max_fraction:
            found.append(f"vessel fraction {vessel_fraction:.4f} > {self.max_fraction:g}")
        return "; ".join(found)

    def update(self, dice: float, vessel_fraction: float) -> CollapseStatus:
        """Record one validation.

        Args:
            dice: Mean validation Dice, in [0, 1].
            vessel_fraction: Mean predicted vessel fraction, in [0, 1].

        Returns:
            The :class:`CollapseStatus` after this validation.
        """
        reason = self.symptoms(dice, vessel_fraction)
        self.streak = self.streak + 1 if reason else 0
        return CollapseStatus(collapsed=self.streak >= self.patience, streak=self.streak, reason=reason)

    @classmethod
    def from_config(cls, config: Any) -> CollapseMonitor | None:
        """The monitor a :class:`~darlkit.training.TrainConfig` asks for (``collapse_*`` fields).

        Args:
            config: A ``TrainConfig``.

        Returns:
            The monitor, or ``None`` when ``config.collapse_patience`` is 0.
        """
        if not config.collapse_patience:
            return None
        return cls(config.collapse_patience, config.collapse_min_dice, config.collapse_min_fraction,
                   config.collapse_max_fraction)

    def check(self, record: dict[str, Any], *, warn: bool = True) -> CollapseStatus:
        """Update from a validation record and annotate it.

        Reads ``record["dice_mean"]`` and ``record["vessel_fraction_mean"]`` (missing: NaN, a
        symptom), sets ``record["collapse_warning"]`` to the symptoms while collapsed (else
        ``""``), and issues a ``RuntimeWarning`` naming the step when collapsed and ``warn``.

        Args:
            record: A validation record (``{"step", "dice_mean", "vessel_fraction_mean", ...}``).
            warn: Issue the warning (``False`` e.g. on DDP ranks other than 0).

        Returns:
            The :class:`CollapseStatus` after this validation.
        """
        status = self.update(record.get("dice_mean", math.nan), record.get("vessel_fraction_mean", math.nan))
        record["collapse_warning"] = status.reason if status.collapsed else ""
        if status.collapsed and warn:
            warnings.warn(
                f"step {record.get('step')}: the segmentation looks collapsed for {status.streak} validations "
                f"({status.reason}); see CollapseMonitor and TrainConfig.collapse_*",
                RuntimeWarning, stacklevel=3,
            )
        return status

    def reset(self) -> None:
        """Forget the streak (e.g. when a run is restarted from scratch)."""
        self.streak = 0

    def state_dict(self) -> dict[str, int]:
        """The streak, for checkpoints (the options come from the configuration)."""
        return {"streak": self.streak}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the streak written by :meth:`state_dict`.

        Args:
            state: ``{"streak": int >= 0}``.

        Raises:
            ValueError: If the streak is missing or negative.
        """
        streak = state.get("streak") if isinstance(state, dict) else None
        if isinstance(streak, bool) or not isinstance(streak, numbers.Integral) or streak < 0:
            raise ValueError(f"CollapseMonitor state needs a non-negative int 'streak', got {state!r}")
        self.streak = int(streak)
