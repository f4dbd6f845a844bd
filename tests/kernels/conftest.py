import pytest


@pytest.fixture(scope="session")
def fb_library():
    """The Fourier bottleneck library compiled by nvcc (once per session; build.py's stamp makes a
    rebuild a no-op while the sources are unchanged)."""
    from restore.kernels.fourier_bottleneck import build

    try:
        build.find_nvcc()
    except build.BuildError:
        pytest.skip("nvcc not installed")
    return build.build(quiet=True)
