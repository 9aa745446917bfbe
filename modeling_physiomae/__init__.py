"""PhysioMAE: a multimodal masked-autoencoder foundation model for polysomnography.

Importing this package registers the model with transformers' Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from .configuration_physiomae import DEFAULT_MODALITIES, PhysioMAEConfig
from .feature_extraction_physiomae import PhysioMAEFeatureExtractor
from .modeling_physiomae import (
    PhysioMAEForContrastivePreTraining,
    PhysioMAEForPreTraining,
    PhysioMAEForSequenceClassification,
    PhysioMAEModel,
    PhysioMAEPreTrainedModel,
)

AutoConfig.register(PhysioMAEConfig.model_type, PhysioMAEConfig, exist_ok=True)
AutoModel.register(PhysioMAEConfig, PhysioMAEModel, exist_ok=True)
AutoModelForPreTraining.register(PhysioMAEConfig, PhysioMAEForPreTraining, exist_ok=True)
AutoModelForSequenceClassification.register(PhysioMAEConfig, PhysioMAEForSequenceClassification, exist_ok=True)
AutoFeatureExtractor.register(PhysioMAEConfig, PhysioMAEFeatureExtractor, exist_ok=True)

__all__ = [
    "DEFAULT_MODALITIES",
    "PhysioMAEConfig",
    "PhysioMAEFeatureExtractor",
    "PhysioMAEForContrastivePreTraining",
    "PhysioMAEForPreTraining",
    "PhysioMAEForSequenceClassification",
    "PhysioMAEModel",
    "PhysioMAEPreTrainedModel",
]
