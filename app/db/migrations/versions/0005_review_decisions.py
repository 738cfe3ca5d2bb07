"""review decisions: the approved or edited text, who decided, when, and the curated cache entry

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.add_column(sa.Column('final_text', sa.Text(), nullable=True))
        batch.add_column(sa.Column('reviewer', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('decided_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('cache_entry_id', sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.drop_column('cache_entry_id')
        batch.drop_column('decided_at')
        batch.drop_column('reviewer')
        batch.drop_column('final_text')
