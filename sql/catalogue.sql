-- The install script of the current version (built from sql/propensity.sql)
-- and the chain of upgrade scripts from 0.1.0 give the same catalogue: the
-- same extension members with the same definitions, owners, privileges and
-- comments, and the same rows in the tables the scripts fill.  Run last: it
-- drops and recreates the extension.
SET client_min_messages = warning;

-- one row per member and per aspect of it, without oids (the body names
-- the extension's tables, which come and go below)
SET check_function_bodies = off;
CREATE TEMP TABLE catalogue_snapshot (install text, object text, aspect text, definition text);
CREATE FUNCTION pg_temp.take_snapshot(install text) RETURNS bigint LANGUAGE sql AS $$
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'propensity'),
members AS (
    SELECT d.classid, d.objid, d.objsubid,
           (pg_identify_object(d.classid, d.objid, d.objsubid)).type AS type,
           (pg_identify_object(d.classid, d.objid, d.objsubid)).identity AS identity
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
aspects AS (
    -- functions, procedures, aggregates
    SELECT m.type || ' ' || m.identity AS object, 'definition' AS aspect,
           CASE WHEN p.prokind = 'a' THEN
                (SELECT format('%s sfunc=%s stype=%s final=%s combine=%s serial=%s deserial=%s init=%s parallel=%s',
                               pg_get_function_arguments(p.oid), a.aggtransfn::regproc, a.aggtranstype::regtype,
                               a.aggfinalfn::regproc, a.aggcombinefn::regproc, a.aggserialfn::regproc,
                               a.aggdeserialfn::regproc, a.agginitval, p.proparallel)
                   FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
                ELSE pg_get_functiondef(p.oid) END AS definition
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'owner and privileges',
           p.proowner::regrole::text || ' ' || coalesce(p.proacl::text, 'default')
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    -- tables, views, sequences, composite types
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'relation',
           format('kind=%s owner=%s acl=%s persistence=%s rls=%s options=%s partkey=%s bound=%s',
                  c.relkind, c.relowner::regrole, coalesce(c.relacl::text, 'default'), c.relpersistence,
                  c.relrowsecurity, c.reloptions, pg_get_partkeydef(c.oid),
                  pg_get_expr(c.relpartbound, c.oid))
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'columns',
           (SELECT string_agg(format('%s %s%s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                                     CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                                     coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                                     coalesce(' acl ' || a.attacl::text, ''),
                                     coalesce(' comment ' || col_description(c.oid, a.attnum), '')),
                              ', ' ORDER BY a.attnum)
              FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'view',
           pg_get_viewdef(c.oid)
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
     WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'constraint ' || co.conname, pg_get_constraintdef(co.oid)
      FROM members m JOIN pg_constraint co ON m.classid = 'pg_class'::regclass AND co.conrelid = m.objid
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'index ' || i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
      FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'trigger ' || t.tgname, pg_get_triggerdef(t.oid)
      FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'policy ' || po.polname,
           format('%s %s %s', po.polcmd, pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid))
      FROM members m JOIN pg_policy po ON m.classid = 'pg_class'::regclass AND po.polrelid = m.objid
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'sequence',
           format('%s %s %s %s %s', s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmax, s.seqcycle)
      FROM members m JOIN pg_sequence s ON m.classid = 'pg_class'::regclass AND s.seqrelid = m.objid
    -- types
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'type',
           format('%s owner=%s acl=%s', t.typtype, t.typowner::regrole, coalesce(t.typacl::text, 'default'))
      FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
    -- every member's comment, and the members of other kinds by name
    UNION ALL
    SELECT m.type || ' ' || m.identity, 'comment',
           coalesce(obj_description(m.objid, (SELECT relname FROM pg_class WHERE oid = m.classid)), '')
      FROM members m
    -- the schema's privileges, and the rows the scripts put in the tables
    UNION ALL
    SELECT 'schema propensity', 'privileges', coalesce(nspacl::text, 'default')
      FROM pg_namespace WHERE nspname = 'propensity'
    UNION ALL
    SELECT 'table propensity.models', 'rows',
           (SELECT string_agg(format('%s %s %s %s', name, version, intercept, terms), '; ' ORDER BY name, version)
              FROM propensity.models)
    UNION ALL
    SELECT 'table propensity.avro_schemas', 'rows',
           (SELECT string_agg(format('%s %s %s', schema_id, subject, md5(schema)), '; ' ORDER BY schema_id)
              FROM propensity.avro_schemas)
    UNION ALL
    SELECT 'table propensity.attribution_state', 'rows',
           (SELECT string_agg(format('%s %s', generation, max_event_time), '; ') FROM propensity.attribution_state)
    UNION ALL
    SELECT 'table propensity.dashboard_settings', 'rows',
           (SELECT string_agg(d::text, '; ') FROM propensity.dashboard_settings d)
    UNION ALL
    -- the tables pg_dump dumps and their conditions: a set (their order is the order of creation)
    SELECT 'extension config', 'dump',
           (SELECT string_agg(format('%s %s', c.tbl::regclass, c.cond), ', ' ORDER BY c.tbl::regclass::text)
              FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(tbl, cond)
             WHERE e.extname = 'propensity')),
ins AS (INSERT INTO catalogue_snapshot SELECT install, object, aspect, coalesce(definition, '') FROM aspects
        RETURNING 1)
SELECT count(*) FROM ins
$$;
RESET check_function_bodies;

-- the current version, from its own install script
DROP EXTENSION IF EXISTS propensity CASCADE;
DROP SCHEMA IF EXISTS propensity CASCADE;
CREATE EXTENSION propensity;
SELECT extversion AS fresh_version FROM pg_extension WHERE extname = 'propensity';
SELECT pg_temp.take_snapshot('fresh') > 500 AS many_aspects;

-- 0.1.0 and every upgrade script
DROP EXTENSION propensity CASCADE;
DROP SCHEMA IF EXISTS propensity CASCADE;
CREATE EXTENSION propensity VERSION '0.1.0';
ALTER EXTENSION propensity UPDATE;
SELECT extversion AS upgraded_version FROM pg_extension WHERE extname = 'propensity';
SELECT pg_temp.take_snapshot('upgraded') > 500 AS many_aspects;

-- what one has and the other has not (none expected)
SELECT object, aspect, install, left(definition, 200) AS definition
  FROM (SELECT *, count(*) OVER (PARTITION BY object, aspect, definition) AS n
          FROM catalogue_snapshot) s
 WHERE n = 1
 ORDER BY object, aspect, install;
-- the members of each kind, the same on both sides
SELECT split_part(object, ' ', 1) AS kind, count(*) FILTER (WHERE install = 'fresh') AS fresh,
       count(*) FILTER (WHERE install = 'upgraded') AS upgraded
  FROM catalogue_snapshot WHERE aspect = 'comment'
 GROUP BY 1 ORDER BY 1;
