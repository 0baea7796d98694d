"""Every table, imported here so Alembic and the app see the whole schema."""

from service.orm.access_log import AccessLogEntry
from service.orm.analysis import Analysis, AnalysisStatus
from service.orm.api_token import ApiToken
from service.orm.base import Base
from service.orm.instance import Instance
from service.orm.patient import Patient
from service.orm.series import Series
from service.orm.study import Study
from service.orm.user import User

__all__ = [
    "AccessLogEntry",
    "Analysis",
    "AnalysisStatus",
    "ApiToken",
    "Base",
    "Instance",
    "Patient",
    "Series",
    "Study",
    "User",
]
