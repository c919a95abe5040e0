"""bulletproof-etl: re-run a reference-data ETL without losing what users built on it."""

from .errors import BulletproofError

__all__ = ["BulletproofError"]
__version__ = "0.1.0"
