"""The pretraining strategies, one record each: what train.py builds, changes and runs for it.

Every place that behaves differently per strategy reads a field of its `Strategy` here (train.py, the training
library, run_experiment.py); nothing compares strategy names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Strategy:
    """One pretraining strategy.

    Attributes:
        name (`str`): the `--strategy` value.
        summary (`str`): one sentence for the model card.
        model_class (`str`): the `modeling_physiomae` class trained (and exported) for it.
        config_changes (`dict`): config fields the strategy sets, whatever the command line says.
        trains (`bool`): False for the untrained floor (the seeded initialisation is exported as it is).
        per_modality (`bool`): one model per modality, each in its own run folder and export.
        reconstructs (`bool`): a masked-patch decoder: target statistics and the held-out reconstruction error.
        min_modalities (`int`): fewest modalities the model may have.
        needs_modality_dropout (`bool`): `modality_dropout_prob` must be > 0.
    """

    name: str
    summary: str
    model_class: str = "PhysioMAEForPreTraining"
    config_changes: dict[str, Any] = field(default_factory=dict)
    trains: bool = True
    per_modality: bool = False
    reconstructs: bool = True
    min_modalities: int = 1
    needs_modality_dropout: bool = False

    def configure(self, config) -> None:
        """Apply `config_changes` to `config` and check the strategy's requirements (ValueError naming them)."""
        for key, value in self.config_changes.items():
            setattr(config, key, value)
        if self.needs_modality_dropout and config.modality_dropout_prob <= 0:
            raise ValueError(f"strategy {self.name} needs modality_dropout_prob > 0 (use strategy mae for 0)")
        if config.num_modalities < self.min_modalities:
            raise ValueError(f"strategy {self.name} needs at least {self.min_modalities} modalities, the model has "
                             f"{config.modality_names}")

    def load_model_class(self):
        import modeling_physiomae.modeling_physiomae as modeling

        return getattr(modeling, self.model_class)


STRATEGIES: dict[str, Strategy] = {
    strategy.name: strategy
    for strategy in (
        Strategy("mae_modality_drop",
                 "Early-fusion masked autoencoder pretrained with input modality dropout (the proposal).",
                 min_modalities=2, needs_modality_dropout=True),
        Strategy("mae", "Early-fusion masked autoencoder pretrained without modality dropout.",
                 config_changes={"modality_dropout_prob": 0.0}),
        Strategy("mae_unimodal", "Masked autoencoder pretrained on a single modality.",
                 config_changes={"modality_dropout_prob": 0.0}, per_modality=True),
        Strategy("contrastive_pairwise",
                 "Late-fusion encoder pretrained with pairwise (CLIP-style) InfoNCE between modalities.",
                 model_class="PhysioMAEForContrastivePreTraining",
                 config_changes={"fusion": "late", "contrastive_loss": "pairwise"}, reconstructs=False,
                 min_modalities=2),
        Strategy("contrastive_loo", "Late-fusion encoder pretrained with leave-one-out InfoNCE between modalities.",
                 model_class="PhysioMAEForContrastivePreTraining",
                 config_changes={"fusion": "late", "contrastive_loss": "loo"}, reconstructs=False, min_modalities=2),
        Strategy("random_init",
                 "Untrained encoder (random initialisation): the floor every pretrained variant is compared with.",
                 trains=False, reconstructs=False),
    )
}
STRATEGY_NAMES = tuple(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGY_NAMES)}") from None
