"""The TOML presets shipped with bagmar, read with importlib.resources (`bagmar presets` lists them)."""
