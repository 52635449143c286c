//! The table filter of a restore (`--tables`, [`LoadOptions::tables`](super::LoadOptions)), one
//! rule for every engine and for the pipeline that picks the objects to load: no list selects
//! every table; a name in the list selects the table of that name or of that schema-qualified
//! name (`public.orders` and `orders` both select PostgreSQL's `public.orders`; MySQL's tables
//! have no schema in the manifest). Names found in a server's catalog or a script (MySQL's live
//! tables, a foreign dump's statements) are matched as they are ([`selects_name`]).

use crate::format::manifest::TableEntry;

/// Whether `name` names table `t` (its name or its schema-qualified name).
pub(crate) fn is_named(t: &TableEntry, name: &str) -> bool {
    name == t.name || name == t.display_name()
}

/// Whether the filter `tables` (`None`: every table) selects `t`.
pub(crate) fn selects(tables: Option<&[String]>, t: &TableEntry) -> bool {
    tables.is_none_or(|list| list.iter().any(|n| is_named(t, n)))
}

/// Whether the filter `tables` (`None`: every table) selects the table called `name` (a name as
/// the server or a script spells it).
// Only the MySQL engine matches bare names read from the server or a script.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn selects_name(tables: Option<&[String]>, name: &str) -> bool {
    tables.is_none_or(|list| list.iter().any(|n| n == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: Option<&str>, name: &str) -> TableEntry {
        serde_json::from_value(serde_json::json!({
            "key": name, "schema": schema, "name": name, "rows": 0
        }))
        .unwrap()
    }

    #[test]
    fn a_name_selects_its_table_bare_or_schema_qualified() {
        let (pg, my) = (table(Some("public"), "orders"), table(None, "orders"));
        for t in [&pg, &my] {
            assert!(selects(None, t));
            assert!(selects(Some(&["users".into(), "orders".into()]), t));
            assert!(!selects(Some(&["users".into()]), t));
            assert!(!selects(Some(&[]), t));
            assert!(!selects(Some(&["Orders".into()]), t));
        }
        assert!(selects(Some(&["public.orders".into()]), &pg));
        assert!(!selects(Some(&["other.orders".into()]), &pg));
        assert!(!selects(Some(&["public.orders".into()]), &my));
        assert!(selects_name(None, "orders"));
        assert!(selects_name(Some(&["orders".into()]), "orders"));
        assert!(!selects_name(Some(&["orders".into()]), "order"));
    }
}
