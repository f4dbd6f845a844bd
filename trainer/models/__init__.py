"""The model zoo. Importing this package registers every architecture."""
from . import degan, discriminators, fourier_unet, gir, rrdbnet, skip_autoencoder  # noqa: F401  (registers)
from .fourier import FourierBottleneck, SpectralFilter
from .fourier_unet import FOURIER_UNET_LARGE
from .registry import MODELS, build_model, count_parameters, list_models, register

__all__ = [
    "FOURIER_UNET_LARGE", "MODELS", "FourierBottleneck", "SpectralFilter",
    "build_model", "count_parameters", "list_models", "register",
]
