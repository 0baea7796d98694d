"""Cohort bias reports and model sanity checks (cascading randomisation), by weights sha256.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:53:30.521069
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_reports',
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('identified', sa.Boolean(), nullable=False),
    sa.Column('status', sa.Enum('running', 'done', 'failed', name='audit_report_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('progress_done', sa.Integer(), nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=False),
    sa.Column('analyses', sa.Integer(), nullable=False),
    sa.Column('highlighted', sa.Integer(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_reports'))
    )
    op.create_table('sanity_checks',
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('images', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sanity_checks'))
    )
    with op.batch_alter_table('sanity_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sanity_checks_model_sha256'), ['model_sha256'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sanity_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sanity_checks_model_sha256'))

    op.drop_table('sanity_checks')
    op.drop_table('audit_reports')
