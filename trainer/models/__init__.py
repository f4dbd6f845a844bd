"""The model zoo. Importing this package registers every architecture."""
from . import fourier_unet  # noqa: F401  (registers)
from .fourier import FourierBottleneck, SpectralFilter
from .registry import MODELS, build_model, count_parameters, list_models, register

__all__ = ["MODELS", "FourierBottleneck", "SpectralFilter", "build_model", "count_parameters", "list_models", "register"]
