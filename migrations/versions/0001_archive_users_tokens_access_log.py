"""archive users tokens access log

Revision ID: 0001
Revises:
Create Date: 2026-11-26 00:10:25.976962
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('patients',
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('issuer_of_patient_id', sa.String(length=64), nullable=False),
    sa.Column('patient_name', sa.String(length=324), nullable=False),
    sa.Column('patient_sex', sa.String(length=16), nullable=False),
    sa.Column('patient_birth_date', sa.String(length=8), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('patient_id', 'issuer_of_patient_id', name=op.f('uq_patients_patient_id'))
    )
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patients_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_patients_patient_name'), ['patient_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_patients_patient_sex'), ['patient_sex'], unique=False)

    op.create_table('users',
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.Enum('integration', 'clinician', 'auditor', 'admin', name='role', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('api_tokens',
    sa.Column('user_pk', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.Enum('integration', 'clinician', 'auditor', 'admin', name='role', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_pk'], ['users.id'], name=op.f('fk_api_tokens_user_pk_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_api_tokens_token_sha256'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_pk'), ['user_pk'], unique=False)

    op.create_table('studies',
    sa.Column('study_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('patient_pk', sa.Uuid(), nullable=False),
    sa.Column('study_date', sa.String(length=8), nullable=False),
    sa.Column('study_time', sa.String(length=16), nullable=False),
    sa.Column('accession_number', sa.String(length=64), nullable=False),
    sa.Column('study_id', sa.String(length=16), nullable=False),
    sa.Column('study_description', sa.String(length=64), nullable=False),
    sa.Column('referring_physician_name', sa.String(length=324), nullable=False),
    sa.Column('patient_age', sa.String(length=4), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_pk'], ['patients.id'], name=op.f('fk_studies_patient_pk_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_studies')),
    sa.UniqueConstraint('study_instance_uid', name=op.f('uq_studies_study_instance_uid'))
    )
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_studies_accession_number'), ['accession_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_studies_patient_age'), ['patient_age'], unique=False)
        batch_op.create_index(batch_op.f('ix_studies_patient_pk'), ['patient_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_studies_referring_physician_name'), ['referring_physician_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_studies_study_date'), ['study_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_studies_study_description'), ['study_description'], unique=False)
        batch_op.create_index(batch_op.f('ix_studies_study_time'), ['study_time'], unique=False)

    op.create_table('access_log',
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_pk', sa.Uuid(), nullable=True),
    sa.Column('token_pk', sa.Uuid(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('study_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('series_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('result_count', sa.Integer(), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('client_addr', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['token_pk'], ['api_tokens.id'], name=op.f('fk_access_log_token_pk_api_tokens')),
    sa.ForeignKeyConstraint(['user_pk'], ['users.id'], name=op.f('fk_access_log_user_pk_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_log'))
    )
    with op.batch_alter_table('access_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_log_study_instance_uid'), ['study_instance_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_log_user_pk'), ['user_pk'], unique=False)

    op.create_table('series',
    sa.Column('series_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('study_pk', sa.Uuid(), nullable=False),
    sa.Column('modality', sa.String(length=16), nullable=False),
    sa.Column('series_number', sa.Integer(), nullable=True),
    sa.Column('series_description', sa.String(length=64), nullable=False),
    sa.Column('body_part_examined', sa.String(length=16), nullable=False),
    sa.Column('manufacturer', sa.String(length=64), nullable=False),
    sa.Column('manufacturer_model_name', sa.String(length=64), nullable=False),
    sa.Column('institution_name', sa.String(length=64), nullable=False),
    sa.Column('station_name', sa.String(length=16), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['study_pk'], ['studies.id'], name=op.f('fk_series_study_pk_studies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_series')),
    sa.UniqueConstraint('series_instance_uid', name=op.f('uq_series_series_instance_uid'))
    )
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_series_body_part_examined'), ['body_part_examined'], unique=False)
        batch_op.create_index(batch_op.f('ix_series_institution_name'), ['institution_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_series_manufacturer'), ['manufacturer'], unique=False)
        batch_op.create_index(batch_op.f('ix_series_manufacturer_model_name'), ['manufacturer_model_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_series_modality'), ['modality'], unique=False)
        batch_op.create_index(batch_op.f('ix_series_station_name'), ['station_name'], unique=False)
        batch_op.create_index(batch_op.f('ix_series_study_pk'), ['study_pk'], unique=False)

    op.create_table('instances',
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=False),
    sa.Column('series_pk', sa.Uuid(), nullable=False),
    sa.Column('sop_class_uid', sa.String(length=64), nullable=False),
    sa.Column('instance_number', sa.Integer(), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=True),
    sa.Column('columns', sa.Integer(), nullable=True),
    sa.Column('number_of_frames', sa.Integer(), nullable=False),
    sa.Column('bits_allocated', sa.Integer(), nullable=True),
    sa.Column('photometric_interpretation', sa.String(length=16), nullable=False),
    sa.Column('view_position', sa.String(length=16), nullable=False),
    sa.Column('transfer_syntax_uid', sa.String(length=64), nullable=False),
    sa.Column('file_path', sa.String(length=255), nullable=False),
    sa.Column('file_size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('dicom_json', sa.JSON(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['series_pk'], ['series.id'], name=op.f('fk_instances_series_pk_series')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instances')),
    sa.UniqueConstraint('sop_instance_uid', name=op.f('uq_instances_sop_instance_uid'))
    )
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instances_columns'), ['columns'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_file_size'), ['file_size'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_number_of_frames'), ['number_of_frames'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_rows'), ['rows'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_series_pk'), ['series_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_sop_class_uid'), ['sop_class_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_transfer_syntax_uid'), ['transfer_syntax_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_instances_view_position'), ['view_position'], unique=False)

    _forbid_access_log_changes()


def downgrade() -> None:
    _allow_access_log_changes()
    with op.batch_alter_table('instances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instances_view_position'))
        batch_op.drop_index(batch_op.f('ix_instances_transfer_syntax_uid'))
        batch_op.drop_index(batch_op.f('ix_instances_sop_class_uid'))
        batch_op.drop_index(batch_op.f('ix_instances_sha256'))
        batch_op.drop_index(batch_op.f('ix_instances_series_pk'))
        batch_op.drop_index(batch_op.f('ix_instances_rows'))
        batch_op.drop_index(batch_op.f('ix_instances_number_of_frames'))
        batch_op.drop_index(batch_op.f('ix_instances_file_size'))
        batch_op.drop_index(batch_op.f('ix_instances_columns'))

    op.drop_table('instances')
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_series_study_pk'))
        batch_op.drop_index(batch_op.f('ix_series_station_name'))
        batch_op.drop_index(batch_op.f('ix_series_modality'))
        batch_op.drop_index(batch_op.f('ix_series_manufacturer_model_name'))
        batch_op.drop_index(batch_op.f('ix_series_manufacturer'))
        batch_op.drop_index(batch_op.f('ix_series_institution_name'))
        batch_op.drop_index(batch_op.f('ix_series_body_part_examined'))

    op.drop_table('series')
    with op.batch_alter_table('access_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_log_user_pk'))
        batch_op.drop_index(batch_op.f('ix_access_log_study_instance_uid'))
        batch_op.drop_index(batch_op.f('ix_access_log_at'))
        batch_op.drop_index(batch_op.f('ix_access_log_action'))

    op.drop_table('access_log')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_studies_study_time'))
        batch_op.drop_index(batch_op.f('ix_studies_study_description'))
        batch_op.drop_index(batch_op.f('ix_studies_study_date'))
        batch_op.drop_index(batch_op.f('ix_studies_referring_physician_name'))
        batch_op.drop_index(batch_op.f('ix_studies_patient_pk'))
        batch_op.drop_index(batch_op.f('ix_studies_patient_age'))
        batch_op.drop_index(batch_op.f('ix_studies_accession_number'))

    op.drop_table('studies')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_pk'))

    op.drop_table('api_tokens')
    op.drop_table('users')
    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patients_patient_sex'))
        batch_op.drop_index(batch_op.f('ix_patients_patient_name'))
        batch_op.drop_index(batch_op.f('ix_patients_patient_id'))

    op.drop_table('patients')


# The access log is append-only: the database itself refuses UPDATE and DELETE on it.
def _forbid_access_log_changes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION access_log_is_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'access_log is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION access_log_is_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER access_log_no_{event.lower()} BEFORE {event} ON access_log "
                "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END"
            )


def _allow_access_log_changes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS access_log_append_only ON access_log")
        op.execute("DROP FUNCTION IF EXISTS access_log_is_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS access_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS access_log_no_delete")
