//! The whole catalog of a PostgreSQL database as sorted text lines, for comparing a source with
//! its restored copy object by object (issue 12): schemas, relations, columns, constraints,
//! indexes, views, routines, aggregates, triggers, event triggers, policies, publications,
//! extensions, types, sequences (with their state), default privileges, ACLs, comments, security
//! labels, statistics objects, operators, casts, collations, text search objects, foreign-data
//! objects, the database's own settings and its per-role settings.
//!
//! `connoinherit` is compared for CHECK constraints only: PostgreSQL sets it differently on a
//! partition's primary key created with the partition and one attached later (as every
//! pg_dump-based restore does), where it means nothing. A domain's default is compared as its
//! expression (the stored text depends on the `search_path` at creation).
//!
//! ACLs are compared by meaning: a never-changed ACL (NULL) as the default it stands for.
//!
//! Everything is named, never identified by oid (oids differ after a restore, except those of
//! large objects, which dbbackup keeps). Owners are left out and written `owner` inside ACLs: a
//! restore is no-owner by default.
//! Column positions count only live columns (a dropped column leaves a gap in the source that a
//! restore does not recreate). Enum labels are compared in their order, not by their float sort
//! keys. Lines of the database itself start with `db ` so callers comparing with a plain pg_dump
//! (which does not carry them) can drop them.

use tokio_postgres::Client;

/// Objects in these schemas are the system's, not the database's.
const USER_NS: &str = "nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_toast%' \
                       AND nspname NOT LIKE 'pg\\_temp%'";

/// Whether an object (class, oid) belongs to an extension (then its extension brings it back).
fn not_ext(class: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = '{class}'::regclass AND dep.objid = {oid} \
         AND dep.deptype = 'e')"
    )
}

/// (section, query returning one text column) for every kind of object.
fn queries() -> Vec<(&'static str, String)> {
    let rel_ns = format!("c.relnamespace IN (SELECT oid FROM pg_namespace WHERE {USER_NS})");
    let rel_user = format!("{rel_ns} AND {}", not_ext("pg_class", "c.oid"));
    let proc_user = format!(
        "p.pronamespace IN (SELECT oid FROM pg_namespace WHERE {USER_NS}) AND {}",
        not_ext("pg_proc", "p.oid")
    );
    let type_user = format!(
        "t.typnamespace IN (SELECT oid FROM pg_namespace WHERE {USER_NS}) AND {}",
        not_ext("pg_type", "t.oid")
    );
    vec![
        (
            "schema",
            format!(
                "SELECT format('%I acl=%s', nspname, pg_temp.acl_text(nspacl, nspowner, 'n')) FROM pg_namespace n WHERE {USER_NS} AND {}",
                not_ext("pg_namespace", "n.oid")
            ),
        ),
        (
            "extension",
            "SELECT format('%I version=%s schema=%I relocatable=%s config=%s', e.extname, e.extversion, n.nspname, \
             e.extrelocatable, (SELECT array_agg(x::regclass::text ORDER BY x::regclass::text) FROM unnest(e.extconfig) x)) \
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
                .into(),
        ),
        (
            "relation",
            format!(
                "SELECT format('%s kind=%s persistence=%s options=%s rls=%s force_rls=%s replident=%s partition=%s \
                 partkey=%s bound=%s of=%s am=%s tablespace=%s acl=%s', c.oid::regclass, c.relkind, c.relpersistence, \
                 c.reloptions, c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.relispartition, \
                 CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, pg_get_expr(c.relpartbound, c.oid), \
                 c.reloftype::regtype, (SELECT amname FROM pg_am WHERE oid = c.relam), \
                 (SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace), pg_temp.acl_text(c.relacl, c.relowner, (CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::\"char\")) \
                 FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND {rel_user}"
            ),
        ),
        (
            "inherits",
            format!(
                "SELECT format('%s <- %s #%s', i.inhparent::regclass, c.oid::regclass, i.inhseqno) \
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE {rel_user}"
            ),
        ),
        (
            "column",
            format!(
                "SELECT format('%s #%s %I %s notnull=%s default=%s identity=%s generated=%s collation=%s options=%s \
                 stattarget=%s storage=%s compression=%s local=%s inhcount=%s acl=%s fdwoptions=%s', c.oid::regclass, \
                 row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname, \
                 format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, \
                 a.attgenerated, (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co \
                   JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation), a.attoptions, \
                 a.attstattarget, a.attstorage, a.attcompression, a.attislocal, a.attinhcount, pg_temp.acl_text(a.attacl, c.relowner, 'c'), a.attfdwoptions) \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND {rel_user}"
            ),
        ),
        (
            "constraint",
            format!(
                "SELECT format('%s %I %s %s deferrable=%s deferred=%s validated=%s local=%s inhcount=%s noinherit=%s', \
                 CASE WHEN con.conrelid <> 0 THEN con.conrelid::regclass::text ELSE con.contypid::regtype::text END, con.conname, con.contype, \
                 pg_get_constraintdef(con.oid), con.condeferrable, con.condeferred, con.convalidated, con.conislocal, \
                 con.coninhcount, CASE WHEN con.contype = 'c' THEN con.connoinherit END) FROM pg_constraint con \
                 WHERE con.connamespace IN (SELECT oid FROM pg_namespace WHERE {USER_NS}) AND {}",
                not_ext("pg_constraint", "con.oid")
            ),
        ),
        (
            "index",
            format!(
                "SELECT format('%s clustered=%s replident=%s valid=%s', pg_get_indexdef(i.indexrelid), i.indisclustered, \
                 i.indisreplident, i.indisvalid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE {rel_user}"
            ),
        ),
        (
            "view",
            format!(
                "SELECT format('%s kind=%s populated=%s %s', c.oid::regclass, c.relkind, \
                 CASE WHEN c.relkind = 'm' THEN c.relispopulated END, pg_get_viewdef(c.oid)) \
                 FROM pg_class c WHERE c.relkind IN ('v', 'm') AND {rel_user}"
            ),
        ),
        (
            "rule",
            format!(
                "SELECT pg_get_ruledef(r.oid) || format(' enabled=%s', r.ev_enabled) FROM pg_rewrite r \
                 JOIN pg_class c ON c.oid = r.ev_class WHERE r.rulename <> '_RETURN' AND {rel_user}"
            ),
        ),
        (
            "routine",
            format!(
                "SELECT format('%s acl=%s', pg_get_functiondef(p.oid), pg_temp.acl_text(p.proacl, p.proowner, 'f')) FROM pg_proc p \
                 WHERE p.prokind <> 'a' AND {proc_user}"
            ),
        ),
        (
            "aggregate",
            format!(
                "SELECT format('%s(%s) kind=%s sfunc=%s stype=%s final=%s combine=%s init=%s sortop=%s acl=%s', \
                 p.oid::regproc, pg_get_function_identity_arguments(p.oid), a.aggkind, a.aggtransfn::regproc, \
                 a.aggtranstype::regtype, a.aggfinalfn::regproc, a.aggcombinefn::regproc, a.agginitval, \
                 a.aggsortop::regoperator, pg_temp.acl_text(p.proacl, p.proowner, 'f')) FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid \
                 WHERE {proc_user}"
            ),
        ),
        (
            "trigger",
            format!(
                "SELECT format('%s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled) FROM pg_trigger t \
                 JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND {rel_user}"
            ),
        ),
        (
            "event trigger",
            "SELECT format('%I on %s %s enabled=%s tags=%s', evtname, evtevent, evtfoid::regproc, evtenabled, evttags) \
             FROM pg_event_trigger"
                .into(),
        ),
        (
            "policy",
            format!(
                "SELECT format('%s %I permissive=%s cmd=%s roles=%s using=%s check=%s', c.oid::regclass, p.polname, \
                 p.polpermissive, p.polcmd, \
                 (SELECT array_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END ORDER BY 1) FROM unnest(p.polroles) r), \
                 pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)) \
                 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE {rel_user}"
            ),
        ),
        (
            "publication",
            "SELECT format('%I alltables=%s ins=%s upd=%s del=%s trunc=%s viaroot=%s', pubname, puballtables, pubinsert, \
             pubupdate, pubdelete, pubtruncate, pubviaroot) FROM pg_publication"
                .into(),
        ),
        (
            "publication table",
            "SELECT format('%I %s where=%s columns=%s', p.pubname, r.prrelid::regclass, \
             pg_get_expr(r.prqual, r.prrelid), r.prattrs) FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid"
                .into(),
        ),
        (
            "publication schema",
            "SELECT format('%I %I', p.pubname, n.nspname) FROM pg_publication_namespace pn \
             JOIN pg_publication p ON p.oid = pn.pnpubid JOIN pg_namespace n ON n.oid = pn.pnnspid"
                .into(),
        ),
        (
            "subscription",
            "SELECT format('%I enabled=%s slot=%s publications=%s', subname, subenabled, subslotname, subpublications) \
             FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                .into(),
        ),
        (
            "type",
            format!(
                "SELECT format('%s type=%s category=%s base=%s notnull=%s default=%s collation=%s acl=%s input=%s', \
                 t.oid::regtype, t.typtype, t.typcategory, nullif(t.typbasetype, 0)::regtype, t.typnotnull, \
                 pg_get_expr(t.typdefaultbin, 0), \
                 nullif(t.typcollation, 0), pg_temp.acl_text(t.typacl, t.typowner, 'T'), t.typinput::regproc) FROM pg_type t \
                 WHERE t.typtype IN ('b', 'd', 'e', 'r', 'm', 'p') AND t.typelem = 0 AND {type_user}"
            ),
        ),
        (
            "enum",
            format!(
                "SELECT format('%s %s', t.oid::regtype, array_agg(e.enumlabel ORDER BY e.enumsortorder)) \
                 FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE {type_user} GROUP BY t.oid"
            ),
        ),
        (
            "range",
            format!(
                "SELECT format('%s subtype=%s opclass=%s collation=%s canonical=%s diff=%s multirange=%s', \
                 r.rngtypid::regtype, r.rngsubtype::regtype, (SELECT opcname FROM pg_opclass WHERE oid = r.rngsubopc), \
                 nullif(r.rngcollation, 0), r.rngcanonical::regproc, r.rngsubdiff::regproc, r.rngmultitypid::regtype) \
                 FROM pg_range r JOIN pg_type t ON t.oid = r.rngtypid WHERE {type_user}"
            ),
        ),
        (
            "sequence",
            format!(
                "SELECT format('%s type=%s start=%s inc=%s min=%s max=%s cache=%s cycle=%s last=%s called=%s owned_by=%s', \
                 s.seqrelid::regclass, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, \
                 s.seqcycle, ps.last_value, \
                 (SELECT pg_sequence_last_value(s.seqrelid) IS NOT NULL), \
                 (SELECT format('%s.%s', d.refobjid::regclass, a.attname) FROM pg_depend d JOIN pg_attribute a \
                    ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.classid = 'pg_class'::regclass \
                    AND d.objid = s.seqrelid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))) \
                 FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid \
                 JOIN pg_sequences ps ON ps.schemaname = (SELECT nspname FROM pg_namespace WHERE oid = c.relnamespace) \
                   AND ps.sequencename = c.relname WHERE {rel_user}"
            ),
        ),
        (
            "default privileges",
            "SELECT format('%s schema=%s type=%s acl=%s', d.defaclrole::regrole, \
             (SELECT nspname FROM pg_namespace WHERE oid = d.defaclnamespace), d.defaclobjtype, pg_temp.acl_text(d.defaclacl, d.defaclrole, 'r')) \
             FROM pg_default_acl d"
                .into(),
        ),
        (
            "comment",
            format!("SELECT format('%s: %L', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description) \
             FROM pg_description d WHERE (d.objoid >= 16384 OR d.classoid = 'pg_namespace'::regclass \
               AND d.objoid IN (SELECT oid FROM pg_namespace WHERE {USER_NS})) \
             AND d.classoid <> 'pg_largeobject'::regclass \
             AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = d.classoid AND dep.objid = d.objoid \
               AND dep.deptype = 'e') \
             AND NOT (d.classoid = 'pg_class'::regclass AND EXISTS (SELECT 1 FROM pg_depend dep \
               WHERE dep.classid = 'pg_class'::regclass AND dep.objid = d.objoid AND dep.deptype = 'e'))"),
        ),
        (
            "security label",
            "SELECT format('%s %s: %L', pg_describe_object(classoid, objoid, objsubid), provider, label) FROM pg_seclabel"
                .into(),
        ),
        (
            "statistics",
            format!(
                "SELECT format('%s target=%s', pg_get_statisticsobjdef(s.oid), s.stxstattarget) FROM pg_statistic_ext s \
                 WHERE s.stxnamespace IN (SELECT oid FROM pg_namespace WHERE {USER_NS})"
            ),
        ),
        (
            "operator",
            format!(
                "SELECT format('%s proc=%s commutator=%s negator=%s restrict=%s join=%s hashes=%s merges=%s', \
                 o.oid::regoperator, o.oprcode::regproc, nullif(o.oprcom, 0)::regoperator, \
                 nullif(o.oprnegate, 0)::regoperator, o.oprrest::regproc, o.oprjoin::regproc, o.oprcanhash, o.oprcanmerge) \
                 FROM pg_operator o WHERE o.oprnamespace IN (SELECT oid FROM pg_namespace WHERE {USER_NS}) AND {}",
                not_ext("pg_operator", "o.oid")
            ),
        ),
        (
            "operator class",
            format!(
                "SELECT format('%I.%I am=%s type=%s default=%s', n.nspname, o.opcname, \
                 (SELECT amname FROM pg_am WHERE oid = o.opcmethod), o.opcintype::regtype, o.opcdefault) \
                 FROM pg_opclass o JOIN pg_namespace n ON n.oid = o.opcnamespace WHERE {USER_NS} AND {}",
                not_ext("pg_opclass", "o.oid")
            ),
        ),
        (
            "cast",
            format!(
                "SELECT format('%s -> %s via %s context=%s method=%s', c.castsource::regtype, c.casttarget::regtype, \
                 nullif(c.castfunc, 0)::regprocedure, c.castcontext, c.castmethod) FROM pg_cast c \
                 WHERE c.oid >= 16384 AND {}",
                not_ext("pg_cast", "c.oid")
            ),
        ),
        (
            "collation",
            format!(
                "SELECT format('%I.%I provider=%s deterministic=%s collate=%s ctype=%s', n.nspname, c.collname, \
                 c.collprovider, c.collisdeterministic, c.collcollate, c.collctype) FROM pg_collation c \
                 JOIN pg_namespace n ON n.oid = c.collnamespace WHERE {USER_NS} AND {}",
                not_ext("pg_collation", "c.oid")
            ),
        ),
        (
            "text search",
            format!(
                "SELECT format('config %I.%I parser=%s mappings=%s', n.nspname, c.cfgname, \
                 (SELECT prsname FROM pg_ts_parser WHERE oid = c.cfgparser), \
                 (SELECT count(*) FROM pg_ts_config_map m WHERE m.mapcfg = c.oid)) \
                 FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace WHERE {USER_NS} \
                 UNION ALL SELECT format('dictionary %I.%I template=%s options=%s', n.nspname, d.dictname, \
                 (SELECT tmplname FROM pg_ts_template WHERE oid = d.dicttemplate), d.dictinitoption) FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace \
                 WHERE {USER_NS} AND d.oid >= 16384"
            ),
        ),
        (
            "foreign data",
            "SELECT format('wrapper %I handler=%s validator=%s options=%s acl=%s', fdwname, fdwhandler::regproc, \
             fdwvalidator::regproc, fdwoptions, pg_temp.acl_text(fdwacl, fdwowner, 'F')) FROM pg_foreign_data_wrapper \
             UNION ALL SELECT format('server %I type=%s version=%s options=%s acl=%s', srvname, srvtype, srvversion, \
             srvoptions, pg_temp.acl_text(srvacl, srvowner, 'S')) FROM pg_foreign_server \
             UNION ALL SELECT format('user mapping %s@%s options=%s', usename, srvname, umoptions) FROM pg_user_mappings \
             UNION ALL SELECT format('table %s server=%s options=%s', ftrelid::regclass, \
             (SELECT srvname FROM pg_foreign_server WHERE oid = ftserver), ftoptions) FROM pg_foreign_table"
                .into(),
        ),
        (
            "language",
            "SELECT format('%I trusted=%s acl=%s', lanname, lanpltrusted, pg_temp.acl_text(lanacl, lanowner, 'l')) FROM pg_language WHERE oid >= 16384"
                .into(),
        ),
        (
            "db",
            "SELECT format('encoding=%s collate=%s ctype=%s connlimit=%s comment=%L acl=%s', \
             pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, d.datconnlimit, \
             shobj_description(d.oid, 'pg_database'), pg_temp.acl_text(d.datacl, d.datdba, 'd')) FROM pg_database d WHERE d.datname = current_database()"
                .into(),
        ),
        (
            "db settings",
            "SELECT format('%s %s', CASE WHEN s.setrole = 0 THEN '(all roles)' ELSE s.setrole::regrole::text END, \
             s.setconfig) FROM pg_db_role_setting s \
             WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
                .into(),
        ),
    ]
}

/// The catalog of the database `c` is connected to, one sorted line per object property. Names
/// are schema-qualified (read with `search_path = pg_catalog`).
pub async fn catalog(c: &Client) -> String {
    // An ACL as text with the object's owner written `owner` (a restore is no-owner by default:
    // the restoring role owns the objects and grants as their owner), `public` for PUBLIC, `*`
    // after a grantable privilege; a never-changed ACL (NULL) as the default it stands for
    // (`acldefault`), so an explicit ACL equal to the default compares equal.
    c.batch_execute(
        "CREATE OR REPLACE FUNCTION pg_temp.acl_text(acl aclitem[], owner oid, kind \"char\") RETURNS text \
         LANGUAGE sql AS $$ \
         SELECT coalesce((SELECT string_agg(i, ',' ORDER BY i) FROM ( \
           SELECT format('%s=%s%s/%s', CASE WHEN x.grantee = 0 THEN 'public' WHEN x.grantee = owner THEN 'owner' \
             ELSE x.grantee::regrole::text END, x.privilege_type, CASE WHEN x.is_grantable THEN '*' ELSE '' END, \
             CASE WHEN x.grantor = owner THEN 'owner' ELSE x.grantor::regrole::text END) i \
           FROM aclexplode(coalesce(acl, acldefault(kind, owner))) x) a), '') $$; \
         SET search_path = pg_catalog, pg_temp",
    )
    .await
    .expect("catalog helper function");
    let mut lines = Vec::new();
    for (section, sql) in queries() {
        let rows =
            c.query(sql.as_str(), &[]).await.unwrap_or_else(|e| panic!("catalog {section}: {e}\n{sql}"));
        let prefix =
            if section.starts_with("db") { section.to_string() } else { format!("catalog {section}") };
        for r in rows {
            let v: Option<String> = r.get(0);
            lines.push(format!("{prefix}: {}", v.unwrap_or_default()));
        }
    }
    c.batch_execute("RESET search_path").await.expect("reset search_path");
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Asserts two catalogs are equal, showing a readable diff (lines only in one of them).
pub fn assert_same_catalog(restored: &str, source: &str, what: &str) {
    if restored == source {
        return;
    }
    let r: std::collections::BTreeSet<&str> = restored.lines().collect();
    let s: std::collections::BTreeSet<&str> = source.lines().collect();
    let mut diff = String::new();
    for l in s.difference(&r) {
        diff.push_str(&format!("- {l}\n"));
    }
    for l in r.difference(&s) {
        diff.push_str(&format!("+ {l}\n"));
    }
    panic!("{what}: the catalogs differ (- source only, + restored only):\n{diff}");
}
