-- Every function and procedure of the extension called with all its
-- arguments NULL: it returns, or fails with a clear error of its own.
-- Never a syntax error from SQL built around the NULL (42601), an internal
-- error (XX000), a function, table or column looked up by a NULL name
-- (42883, 42P01, 42703), or a bare RAISE without a code (P0001).
SET client_min_messages = warning;
SET statement_timeout = '600s';
CREATE TEMP TABLE null_calls (fn text, sqlstate text, message text);
DO $$
DECLARE
    p record;
    call text;
    st text;
    msg text;
BEGIN
    FOR p IN SELECT f.oid, f.proname, f.prokind,
                    pg_get_function_identity_arguments(f.oid) AS args,
                    (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
                       FROM unnest(f.proargtypes) WITH ORDINALITY AS a(t, o)) AS nulls
               FROM pg_proc f
              WHERE f.pronamespace = 'propensity'::regnamespace AND f.prokind IN ('f', 'p')
                AND f.pronargs > 0
                AND f.prorettype <> 'trigger'::regtype
                AND NOT 'internal'::regtype = ANY (f.proargtypes::oid[])
              ORDER BY f.proname, f.oid
    LOOP
        call := CASE WHEN p.prokind = 'p' THEN 'CALL ' ELSE 'SELECT * FROM ' END
                || 'propensity.' || quote_ident(p.proname) || '(' || p.nulls || ')';
        BEGIN
            EXECUTE call;
            st := '00000';
            msg := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        END;
        INSERT INTO null_calls VALUES (p.proname || '(' || p.args || ')', st, msg);
    END LOOP;
END $$;
RESET statement_timeout;
RESET client_min_messages;
SELECT count(*) > 50 AS many_functions_called FROM null_calls;
SELECT fn, sqlstate, message FROM null_calls
 WHERE sqlstate IN ('42601', 'XX000', '42883', '42P01', '42703', 'P0001') ORDER BY fn;
