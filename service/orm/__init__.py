"""Every table, imported here so Alembic and the app see the whole schema."""

from service.orm.access_log import AccessLogEntry
from service.orm.analysis import Analysis, AnalysisStatus
from service.orm.api_token import ApiToken
from service.orm.audit_report import AuditReport, ReportStatus
from service.orm.base import Base
from service.orm.instance import Instance
from service.orm.patient import Patient
from service.orm.review import Decision, Review, ReviewChannel
from service.orm.sanity_check import SanityCheck
from service.orm.series import Series
from service.orm.study import Study
from service.orm.user import User
from service.orm.web_session import WebSession

__all__ = [
    "AccessLogEntry",
    "Analysis",
    "AnalysisStatus",
    "ApiToken",
    "AuditReport",
    "Base",
    "Decision",
    "Instance",
    "Patient",
    "ReportStatus",
    "Review",
    "ReviewChannel",
    "SanityCheck",
    "Series",
    "Study",
    "User",
    "WebSession",
]
