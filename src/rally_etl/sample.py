"""The bundled sample: three leagues, about 300 teams, season 1 and its next season 2.

The sample is not committed: it is generated deterministically by :mod:`rally_etl.generate` on
first use into a per-user cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``, then
``bulletproof-etl/sample-v1/season{N}``) and reused afterwards. It is written into a temporary
directory beside the target and renamed into place, so a reader never sees half a sample and two
processes generating it at once both end with the same complete directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from rally_etl.generate import FILES, generate_season, write_season

logger = logging.getLogger(__name__)

#: Bump when the generator's output for these parameters changes: old caches stay untouched.
SAMPLE_VERSION = "sample-v1"
SAMPLE_TEAMS = 300
SAMPLE_SEED = 2025
SAMPLE_CHURN = 0.1
SEASONS = (1, 2)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/bulletproof-etl/sample-v1`` (``~/.cache`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bulletproof-etl" / SAMPLE_VERSION


def _complete(directory: Path) -> bool:
    return all((directory / f"{name}.json").is_file() for name in FILES)


def sample_data_dir(season: int = 1) -> Path:
    """The directory holding the sample's four JSON files of ``season`` (1 or 2)."""
    if season not in SEASONS:
        raise ValueError(f"the sample has seasons {SEASONS}, not {season!r}")
    target = cache_root() / f"season{season}"
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    churn = SAMPLE_CHURN if season == 2 else 0.0
    data = generate_season(SAMPLE_TEAMS, SAMPLE_SEED, season=season, churn=churn)
    tmp = Path(tempfile.mkdtemp(prefix=f".season{season}-", dir=target.parent))
    try:
        write_season(data, tmp)
        if target.exists() and not _complete(target):
            logger.warning("replacing the incomplete sample directory %s", target)
            shutil.rmtree(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _complete(target):  # not another process that won the race: a real error
                raise
            logger.debug("another process wrote %s first", target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info("generated the season %d sample into %s", season, target)
    return target


__all__ = ["SAMPLE_TEAMS", "SAMPLE_SEED", "SAMPLE_VERSION", "cache_root", "sample_data_dir"]
