"""Live generation for the viewer: draw new pairs, or a new partner for a chosen hand, with the sampler's settings.

This is the viewer's only import of the generator (``InterHandGen``) and of the sampler settings, so moving
those modules is a one-line change here. The model is loaded on first use, so the viewer starts fast.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.generation import InterHandGen, SamplerSettings

#: Most pairs one button press may draw (the viewer shows them one at a time).
MAX_DRAW = 64


@dataclasses.dataclass(frozen=True)
class DrawSettings:
    """The sampler settings the viewer exposes; the rest keep :class:`SamplerSettings`' defaults.

    ``apg_weight`` None means the model's recommended value (the sampler's default); 0 disables APG.
    """

    steps: int
    cfg_scale: float
    apg_weight: float | None
    seed: int

    @classmethod
    def defaults(cls) -> "DrawSettings":
        d = SamplerSettings()
        return cls(steps=d.steps, cfg_scale=d.cfg_scale, apg_weight=None, seed=0)

    def sampler_settings(self) -> SamplerSettings:
        base = SamplerSettings()
        s = dataclasses.replace(base, steps=int(self.steps), cfg_scale=float(self.cfg_scale),
                                apg_weight=base.apg_weight if self.apg_weight is None else float(self.apg_weight))
        try:
            s.validate()
        except ValueError as exc:
            raise InputError(f"sampler settings: {exc}") from exc
        return s


class LiveGenerator:
    """Loads the model (bundled by default) on first use and draws pairs with it; thread-safe, one draw at a time.

    Args:
        checkpoint: a run folder, checkpoint.pt or model.safetensors; None: the bundled model.
        device: where the model runs.
    """

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu") -> None:
        self.checkpoint = checkpoint
        self.device = device
        self._gen: InterHandGen | None = None
        self._lock = threading.Lock()

    def _model(self) -> InterHandGen:
        if self._gen is None:
            self._gen = InterHandGen.load(self.checkpoint, device=self.device)
        return self._gen

    def sample(self, num: int, settings: DrawSettings) -> TwoHandSet:
        """``num`` new pairs (world frame, left hand at the origin)."""
        if not isinstance(num, int) or not 1 <= num <= MAX_DRAW:
            raise InputError(f"number of pairs to draw must be an integer in [1, {MAX_DRAW}], got {num!r}")
        with self._lock:
            return self._model().sample(num, seed=int(settings.seed), settings=settings.sampler_settings(),
                                        progress=False)

    def complete(self, given: TwoHandSet, side: str, settings: DrawSettings) -> TwoHandSet:
        """A new partner for the ``side`` hand of each pair of ``given`` (that hand is kept exactly)."""
        with self._lock:
            gen = self._model()
            if given.hand_model != gen.hand_model:
                raise InputError(f"the shown hands use hand model {given.hand_model.kind!r} but the generator "
                                 f"{gen.hand_model.kind!r}: completion needs the same hand model")
            return gen.complete(given, side=side, seed=int(settings.seed), settings=settings.sampler_settings(),
                                progress=False)
