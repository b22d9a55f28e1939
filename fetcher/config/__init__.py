"""Process settings: the TOML file and FETCHER__* environment overrides, read (settings),
checked with every problem collected (validate), and returned as one frozen `Settings` (load).

A leaf of the package: imports nothing of the fetcher but its own modules.
"""

from fetcher.config._load import load_settings
from fetcher.config._settings import (
    ENV_PREFIX,
    AuthzClient,
    CacheSettings,
    FeastSettings,
    FeatureLogSettings,
    KafkaSettings,
    LogSettings,
    ServerSettings,
    Settings,
    SettingsError,
    StoreSettings,
    TlsSettings,
    TracingSettings,
    mask_url,
)
from fetcher.config._validate import log_level

__all__ = [
    "ENV_PREFIX",
    "AuthzClient",
    "CacheSettings",
    "FeastSettings",
    "FeatureLogSettings",
    "KafkaSettings",
    "LogSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "StoreSettings",
    "TlsSettings",
    "TracingSettings",
    "load_settings",
    "log_level",
    "mask_url",
]
