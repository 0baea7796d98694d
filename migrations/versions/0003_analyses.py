"""Analyses: one row per (instance, model version, explanation methods).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:03:41.101632
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('analyses',
    sa.Column('instance_pk', sa.Uuid(), nullable=False),
    sa.Column('study_pk', sa.Uuid(), nullable=False),
    sa.Column('model_name', sa.String(length=128), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=False),
    sa.Column('methods', sa.String(length=128), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'done', 'failed', name='analysis_status', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('results', sa.JSON(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_pk'], ['instances.id'], name=op.f('fk_analyses_instance_pk_instances')),
    sa.ForeignKeyConstraint(['study_pk'], ['studies.id'], name=op.f('fk_analyses_study_pk_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analyses')),
    sa.UniqueConstraint('instance_pk', 'model_sha256', 'methods', name=op.f('uq_analyses_instance_pk'))
    )
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_analyses_instance_pk'), ['instance_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_model_name'), ['model_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_study_pk'), ['study_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analyses_study_pk'))
        batch_op.drop_index(batch_op.f('ix_analyses_status'))
        batch_op.drop_index(batch_op.f('ix_analyses_model_name'))
        batch_op.drop_index(batch_op.f('ix_analyses_instance_pk'))

    op.drop_table('analyses')
