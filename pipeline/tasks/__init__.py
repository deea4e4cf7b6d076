"""Luigi glue: ``luigi --module pipeline.tasks Deliver --run-date YYYY-MM-DD``."""

from pipeline.tasks.cleanse import CleanseSurvey
from pipeline.tasks.deliver import Deliver
from pipeline.tasks.ingest import IngestResults, IngestSurvey
from pipeline.tasks.model import RunModel
from pipeline.tasks.validate import ValidateResults

__all__ = [
    "CleanseSurvey",
    "Deliver",
    "IngestResults",
    "IngestSurvey",
    "RunModel",
    "ValidateResults",
]
