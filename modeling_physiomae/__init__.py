"""PhysioMAE: a multimodal masked-autoencoder foundation model for polysomnography.

Importing this package registers the model with transformers' Auto classes, the feature extractor for
`AutoFeatureExtractor` saves (so its folders carry their code and auto_map), and the `sleep-staging` pipeline.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from .configuration_physiomae import DEFAULT_MODALITIES, ChannelLayout, PhysioMAEConfig
from .feature_extraction_physiomae import PhysioMAEFeatureExtractor
from .modeling_physiomae import (
    PhysioMAEForContrastivePreTraining,
    PhysioMAEForPreTraining,
    PhysioMAEForSequenceClassification,
    PhysioMAEModel,
    PhysioMAEPreTrainedModel,
)
from .pipeline_physiomae import SleepStagingPipeline, register_pipeline

AutoConfig.register(PhysioMAEConfig.model_type, PhysioMAEConfig, exist_ok=True)
AutoModel.register(PhysioMAEConfig, PhysioMAEModel, exist_ok=True)
AutoModelForPreTraining.register(PhysioMAEConfig, PhysioMAEForPreTraining, exist_ok=True)
AutoModelForSequenceClassification.register(PhysioMAEConfig, PhysioMAEForSequenceClassification, exist_ok=True)
AutoFeatureExtractor.register(PhysioMAEConfig, PhysioMAEFeatureExtractor, exist_ok=True)
PhysioMAEFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")  # save_pretrained writes code + auto_map
register_pipeline()

__all__ = [
    "ChannelLayout",
    "DEFAULT_MODALITIES",
    "PhysioMAEConfig",
    "PhysioMAEFeatureExtractor",
    "PhysioMAEForContrastivePreTraining",
    "PhysioMAEForPreTraining",
    "PhysioMAEForSequenceClassification",
    "PhysioMAEModel",
    "PhysioMAEPreTrainedModel",
    "SleepStagingPipeline",
]
