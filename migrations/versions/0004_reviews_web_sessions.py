"""Review decisions (append-only) and web login sessions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:41:25.930988
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('web_sessions',
    sa.Column('user_pk', sa.Uuid(), nullable=False),
    sa.Column('session_sha256', sa.String(length=64), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('client_addr', sa.String(length=64), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_pk'], ['users.id'], name=op.f('fk_web_sessions_user_pk_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions')),
    sa.UniqueConstraint('session_sha256', name=op.f('uq_web_sessions_session_sha256'))
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_web_sessions_user_pk'), ['user_pk'], unique=False)

    op.create_table('reviews',
    sa.Column('analysis_pk', sa.Uuid(), nullable=False),
    sa.Column('user_pk', sa.Uuid(), nullable=True),
    sa.Column('token_pk', sa.Uuid(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('decision', sa.Enum('agree', 'disagree', 'uncertain', name='review_decision', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('finding_label', sa.String(length=64), nullable=False),
    sa.Column('marks', sa.JSON(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('amends_pk', sa.Uuid(), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('time_to_decision_ms', sa.Integer(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['amends_pk'], ['reviews.id'], name=op.f('fk_reviews_amends_pk_reviews')),
    sa.ForeignKeyConstraint(['analysis_pk'], ['analyses.id'], name=op.f('fk_reviews_analysis_pk_analyses')),
    sa.ForeignKeyConstraint(['token_pk'], ['api_tokens.id'], name=op.f('fk_reviews_token_pk_api_tokens')),
    sa.ForeignKeyConstraint(['user_pk'], ['users.id'], name=op.f('fk_reviews_user_pk_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reviews')),
    sa.UniqueConstraint('amends_pk', name=op.f('uq_reviews_amends_pk'))
    )
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reviews_analysis_pk'), ['analysis_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_reviews_user_pk'), ['user_pk'], unique=False)

    _forbid_review_changes()


def downgrade() -> None:
    _allow_review_changes()
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reviews_user_pk'))
        batch_op.drop_index(batch_op.f('ix_reviews_analysis_pk'))

    op.drop_table('reviews')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_user_pk'))
        batch_op.drop_index(batch_op.f('ix_web_sessions_expires_at'))

    op.drop_table('web_sessions')


# Decisions are append-only, like the access log: an amendment is a new row pointing at the
# one it replaces, and the database itself refuses UPDATE and DELETE.
def _forbid_review_changes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION reviews_are_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'reviews are append-only: amend with a new row';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE ON reviews "
            "FOR EACH ROW EXECUTE FUNCTION reviews_are_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER reviews_no_{event.lower()} BEFORE {event} ON reviews "
                "BEGIN SELECT RAISE(ABORT, 'reviews are append-only: amend with a new row'); END"
            )


def _allow_review_changes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS reviews_append_only ON reviews")
        op.execute("DROP FUNCTION IF EXISTS reviews_are_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS reviews_no_update")
        op.execute("DROP TRIGGER IF EXISTS reviews_no_delete")
