"""The three Modelyard kinds as pydantic models: the single source of truth for the API."""

from modelyard.api.common import API_VERSION, CATEGORY, GROUP, VERSION, ResourceBase
from modelyard.api.dataset import Dataset
from modelyard.api.modeldeployment import ModelDeployment
from modelyard.api.trainingjob import TrainingJob

KINDS: tuple[type[ResourceBase], ...] = (Dataset, TrainingJob, ModelDeployment)

__all__ = [
    "API_VERSION",
    "CATEGORY",
    "GROUP",
    "KINDS",
    "VERSION",
    "Dataset",
    "ModelDeployment",
    "ResourceBase",
    "TrainingJob",
]
