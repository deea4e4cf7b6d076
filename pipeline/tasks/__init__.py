"""Luigi glue: ``luigi --module pipeline.tasks Deliver --run-date YYYY-MM-DD``."""

from pipeline import config
from pipeline.tasks.cleanse import CleanseSurvey, RawExport
from pipeline.tasks.deliver import Deliver, upstream
from pipeline.tasks.ingest import IngestResults, IngestSurvey
from pipeline.tasks.model import RunModel
from pipeline.tasks.quality import CheckData
from pipeline.tasks.validate import ValidateResults

# luigi's own command line reads ./luigi.cfg only: find the project's from any directory of
# a checkout before luigi reads [core] and the tasks' defaults.
config.project_config()

__all__ = [
    "CheckData",
    "CleanseSurvey",
    "Deliver",
    "IngestResults",
    "IngestSurvey",
    "RawExport",
    "RunModel",
    "ValidateResults",
    "upstream",
]
