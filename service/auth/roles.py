"""The four roles and what each may do (DESIGN.md, "Security model")."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    INTEGRATION = "integration"  # a viewer or PACS: store, query, retrieve, request analyses
    CLINICIAN = "clinician"  # reviews images and overlays
    AUDITOR = "auditor"  # bias reports, read-only, de-identified by default
    ADMIN = "admin"  # manages users and tokens, reads the access log, may do everything


class Permission(StrEnum):
    DICOM_STORE = "dicom:store"
    DICOM_READ = "dicom:read"
    ANALYSIS_REQUEST = "analysis:request"
    ANALYSIS_READ = "analysis:read"
    ACCESS_LOG_READ = "access-log:read"
    WHOAMI = "whoami"
    REVIEW_READ = "review:read"  # the worklist, the study view, earlier decisions
    REVIEW_WRITE = "review:write"  # record (and amend) agree/disagree/uncertain decisions
    PAGES = "pages:login"  # log in to the web pages with a password (people, not machines)
    AUDIT_REPORTS = "audit:reports"  # cohort bias reports and model sanity checks


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.INTEGRATION: frozenset(
        {
            Permission.DICOM_STORE,
            Permission.DICOM_READ,
            Permission.ANALYSIS_REQUEST,
            Permission.ANALYSIS_READ,
            Permission.WHOAMI,
            # A viewer may show and send the clinician's decisions through the API.
            Permission.REVIEW_READ,
            Permission.REVIEW_WRITE,
        }
    ),
    Role.CLINICIAN: frozenset(
        {
            Permission.DICOM_READ,
            Permission.ANALYSIS_READ,
            Permission.WHOAMI,
            Permission.REVIEW_READ,
            Permission.REVIEW_WRITE,
            Permission.PAGES,
        }
    ),
    # Audit pages only: no identified images, no decisions.
    Role.AUDITOR: frozenset({Permission.WHOAMI, Permission.PAGES, Permission.AUDIT_REPORTS}),
    Role.ADMIN: frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    """Return whether a role holds a permission."""
    return permission in ROLE_PERMISSIONS[role]
