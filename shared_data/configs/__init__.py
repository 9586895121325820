"""Project configs, shared by both frameworks (plain dataclasses, no framework import)."""
