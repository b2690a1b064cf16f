"""Survey runner: pipelines over many spectra in batches (local processes or Dask), results in
SQLite/PostgreSQL through SQLAlchemy, resumable; FITS/Parquet/CSV exports and survey plots.

Main entry points: :func:`run_survey` (the README's main job), :func:`run_pipeline`,
:func:`export_results`; command line ``stellarnn runner ...`` and ``stellarnn export``.
"""
from .engine import RunReport, run_pipeline, run_survey
from .export import export_results
from .fields import RUNNER_FIELDS, RunnerFlag, glossary
from .store import ResultsStore, default_db_url

__all__ = ["RunReport", "run_pipeline", "run_survey", "export_results", "RUNNER_FIELDS", "RunnerFlag", "glossary",
           "ResultsStore", "default_db_url"]
