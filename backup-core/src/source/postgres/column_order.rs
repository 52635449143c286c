//! Keeps the column order of inheritance children that were attached after creation
//! (`ALTER TABLE c INHERIT p`).
//!
//! pg_dump writes every child as `CREATE TABLE c (its local columns) INHERITS (p)`, and
//! `CREATE TABLE ... INHERITS` puts the parents' columns first: a child whose own order differs
//! (it had its columns before it was attached) comes back with another column order (`SELECT *`,
//! `INSERT` without a column list and `COPY` without one then behave differently). For such a
//! child whose columns are all its own (`attislocal`), the pre-data script is rewritten to create
//! it without `INHERITS` and attach it afterwards with `ALTER TABLE ONLY c INHERIT p`, in the
//! parents' order, which is how it was made. A child that also has columns it only inherited
//! (added to a parent after the attach) cannot be written that way without pg_dump's
//! binary-upgrade mode: it keeps pg_dump's form and the backup carries a note saying so.

use tokio_postgres::Client;

use super::conn::pg_err;
use crate::error::Result;
use crate::source::pg_script::{Piece, ScriptReader};

/// One inheritance child whose column order pg_dump's script would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reordered {
    /// `schema.name` quoted as pg_dump quotes it (`format('%I.%I')`).
    pub(crate) table: String,
    /// Parents, quoted likewise, in `inhseqno` order.
    pub(crate) parents: Vec<String>,
    /// Whether every column is the child's own (the rewrite applies only then).
    pub(crate) all_local: bool,
}

/// The children (ordinary tables, not partitions) whose live column order differs from what
/// `CREATE TABLE ... INHERITS` would give them: the parents' columns in parent order (each name
/// once), then the child's other columns.
pub(crate) async fn find(c: &Client) -> Result<Vec<Reordered>> {
    let rows = c
        .query(
            "WITH kids AS ( \
               SELECT DISTINCT i.inhrelid AS rel FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
               WHERE c.relkind = 'r' AND NOT c.relispartition), \
             inh AS ( \
               SELECT i.inhrelid AS rel, a.attname, min(i.inhseqno::bigint * 100000 + a.attnum) AS pos \
               FROM pg_inherits i JOIN kids k ON k.rel = i.inhrelid \
               JOIN pg_attribute a ON a.attrelid = i.inhparent AND a.attnum > 0 AND NOT a.attisdropped \
               GROUP BY 1, 2) \
             SELECT format('%I.%I', n.nspname, c.relname), \
               ARRAY(SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_inherits i \
                     JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace \
                     WHERE i.inhrelid = k.rel ORDER BY i.inhseqno), \
               (SELECT bool_and(a.attislocal) FROM pg_attribute a WHERE a.attrelid = k.rel AND a.attnum > 0 \
                  AND NOT a.attisdropped) \
             FROM kids k JOIN pg_class c ON c.oid = k.rel JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = k.rel AND a.attnum > 0 \
                         AND NOT a.attisdropped ORDER BY a.attnum) \
               IS DISTINCT FROM ARRAY(SELECT x.attname FROM ( \
                   SELECT inh.attname, inh.pos FROM inh WHERE inh.rel = k.rel \
                   UNION ALL SELECT a.attname, 1000000000000 + a.attnum FROM pg_attribute a \
                   WHERE a.attrelid = k.rel AND a.attnum > 0 AND NOT a.attisdropped \
                     AND NOT EXISTS (SELECT 1 FROM inh WHERE inh.rel = k.rel AND inh.attname = a.attname)) x \
                 ORDER BY x.pos) \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(pg_err("find inheritance children with their own column order"))?;
    Ok(rows
        .iter()
        .map(|r| Reordered {
            table: r.get(0),
            parents: r.get(1),
            all_local: r.get::<_, Option<bool>>(2).unwrap_or(true),
        })
        .collect())
}

/// Rewrites pg_dump's pre-data script so each all-local child in `tables` is created without
/// `INHERITS` and attached right after. Returns the script and the children it could not
/// rewrite (not all-local, or their statement not found in the form pg_dump writes).
pub(crate) fn rewrite(pre_data: &str, tables: &[Reordered]) -> (String, Vec<String>) {
    let mut script = pre_data.to_string();
    let mut left = Vec::new();
    for t in tables {
        match t.all_local.then(|| rewrite_one(&script, t)).flatten() {
            Some(s) => script = s,
            None => left.push(t.table.clone()),
        }
    }
    (script, left)
}

fn rewrite_one(script: &str, t: &Reordered) -> Option<String> {
    let head = format!("CREATE TABLE {} (\n", t.table);
    let start =
        script.match_indices(&head).map(|(i, _)| i).find(|&i| i == 0 || script[..i].ends_with('\n'))?;
    // The statement's end, found by the script reader (quotes and comments inside the column
    // definitions cannot fool it).
    let mut r = ScriptReader::new();
    r.push(&script.as_bytes()[start..]);
    r.finish();
    let Ok(Some(Piece::Statement(stmt))) = r.next_piece() else { return None };
    let end = start + stmt.len();
    if !script[start..end].eq(stmt.as_str()) {
        return None;
    }
    let clause = format!("\nINHERITS ({})", t.parents.join(", "));
    let at = stmt.rfind(&clause)?;
    let after = &stmt[at + clause.len()..];
    if !(after.starts_with(';') || after.starts_with('\n')) {
        return None;
    }
    let mut new_stmt = format!("{}{}", &stmt[..at], after);
    for p in &t.parents {
        new_stmt.push_str(&format!("\nALTER TABLE ONLY {} INHERIT {p};", t.table));
    }
    Some(format!("{}{}{}", &script[..start], new_stmt, &script[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_named_child_and_keeps_its_options() {
        let script = "--\n-- Name: c; Type: TABLE\n--\n\nCREATE TABLE public.c (\n    extra text DEFAULT ';\nINHERITS (public.p)',\n    id integer\n)\nINHERITS (public.p, s.\"Q\")\nWITH (fillfactor='70');\n\n\nCREATE TABLE public.d (\n    x integer\n)\nINHERITS (public.p);\n";
        let t = Reordered {
            table: "public.c".into(),
            parents: vec!["public.p".into(), "s.\"Q\"".into()],
            all_local: true,
        };
        let (out, left) = rewrite(script, std::slice::from_ref(&t));
        assert!(left.is_empty());
        assert_eq!(
            out,
            "--\n-- Name: c; Type: TABLE\n--\n\nCREATE TABLE public.c (\n    extra text DEFAULT ';\nINHERITS (public.p)',\n    id integer\n)\nWITH (fillfactor='70');\nALTER TABLE ONLY public.c INHERIT public.p;\nALTER TABLE ONLY public.c INHERIT s.\"Q\";\n\n\nCREATE TABLE public.d (\n    x integer\n)\nINHERITS (public.p);\n"
        );
        let (same, left) = rewrite(script, &[Reordered { all_local: false, ..t }]);
        assert_eq!((same.as_str(), left), (script, vec!["public.c".to_string()]));
    }
}
