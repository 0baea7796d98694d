"""case-insensitive name indexes for QIDO-RS

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:00:00

QIDO-RS matches person names ignoring case, as lower(name) = lower(value) or
lower(name) LIKE lower('prefix%'). Without an index on lower(name) every such search reads
every patient. On PostgreSQL the index uses text_pattern_ops so that LIKE 'prefix%' can use
it under any collation; SQLite has no operator classes (Vigil adds a range on lower(name)).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, column): the same indexes as declared on the Patient and Study models.
INDEXES = (
    ('ix_patients_patient_name_lower', 'patients', 'patient_name'),
    ('ix_studies_referring_physician_name_lower', 'studies', 'referring_physician_name'),
)


def upgrade() -> None:
    ops = ' text_pattern_ops' if op.get_bind().dialect.name == 'postgresql' else ''
    for name, table, column in INDEXES:
        op.create_index(name, table, [sa.text(f'lower({column}){ops}')], unique=False)


def downgrade() -> None:
    for name, table, _column in INDEXES:
        op.drop_index(name, table_name=table)
