"""Loaders that turn outside data (OSM extracts, onboarding files, feeds) into our forms."""
