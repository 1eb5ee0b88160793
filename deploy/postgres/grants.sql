-- Applied after interlock/audit/roles.sql (same session, schema public, as the owner).
-- The kill switch's table: workers read pauses, `interlock pause/resume` add and end them.
-- The audit table's rights are roles.sql's alone: SELECT and INSERT, never UPDATE or DELETE.
GRANT SELECT, INSERT, UPDATE ON pauses TO interlock_app;
GRANT USAGE, SELECT ON SEQUENCE pauses_id_seq TO interlock_app;
