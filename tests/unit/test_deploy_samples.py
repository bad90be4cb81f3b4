"""The sample files in deploy/ are valid for the loaders that read them."""

from __future__ import annotations

from pathlib import Path

from proxy.config.configuration import load_configuration
from resiliency import load_resiliency

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"


def test_sample_resiliency_file_loads_without_problems() -> None:
    config, report = load_resiliency([SAMPLES / "resiliency.yaml"], app_id="checkout")
    assert report.lines() == ()
    assert config.resource_names == ("checkout-resiliency",)
    assert set(config.apps) == {"orders", "payments"}


def test_sample_configuration_loads() -> None:
    settings = load_configuration(SAMPLES / "configuration.yaml", env={})
    assert settings.name == "tether"
    assert settings.metric.path_matching == ("/orders/{id}",)
    assert settings.tracing.sampling_rate == 0.1
