//! Tables as the dump sees them and the manifest records them: how each column travels through
//! the TSV ([`ColKind`]), the table properties the loader reads back ([`TableProps`]), and the
//! listing of a database's tables with their columns and primary keys ([`list_tables`]).

use mysql_async::Conn;
use serde::{Deserialize, Serialize};

use super::conn::{qi, qs, query_text};
use crate::error::{Error, Result};
use crate::format::manifest::TableEntry;

/// How a column travels through the TSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ColKind {
    /// As the server prints it (text protocol, no conversion).
    Plain,
    /// BIT: as an unsigned integer, loaded through a variable.
    Bit,
    /// FLOAT: widened to DOUBLE so every digit survives.
    Float,
    /// A system-versioning period column (`ROW START` / `ROW END`).
    Period,
    /// A type whose internal (binary) form differs from its text (MariaDB's INET4, INET6, UUID):
    /// travels as its text and is loaded through a variable converted to a character string,
    /// since `LOAD DATA ... CHARACTER SET binary` would hand the server a binary string, which it
    /// takes for the internal form (and refuses, e.g. `'0.0.0.0'` or the all-zero UUID).
    TextForm,
    /// ENUM: its value, but the error value (index 0, which a non-strict server stores for an
    /// invalid value and prints as `''`) as the column's [`Col::zero`] text, which is not a
    /// member. The load stores that text as index 0 with one warning per row, and counts them.
    Enum,
}

/// Data types loaded as [`ColKind::TextForm`].
const TEXT_FORM_TYPES: [&str; 3] = ["inet4", "inet6", "uuid"];

/// One dumped column (stored in the manifest's table properties).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Col {
    pub(crate) name: String,
    pub(crate) kind: ColKind,
    /// [`ColKind::Enum`]: the text standing for the error value (`""`, or when `''` is a member
    /// the first of `0`, `00`, ... that is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) zero: Option<String>,
}

impl Col {
    fn new(name: String, kind: ColKind) -> Self {
        Col { name, kind, zero: None }
    }

    /// The value as dumped and checksummed, for [`ColKind::Enum`].
    pub(crate) fn enum_expr(&self) -> String {
        let zero = self.zero.as_deref().unwrap_or("");
        format!("IF({c}+0 = 0, _binary{}, CAST({c} AS BINARY))", qs(zero), c = qi(&self.name))
    }
}

/// The text an ENUM column of type `column_type` (`enum('a','b')`) dumps for its error value:
/// `""` unless that is a member, then the first string of zeros that is not (the server reads a
/// non-member of digits as an index, here 0). `None` when all are members.
fn enum_zero(column_type: &str) -> Option<String> {
    ["", "0", "00", "000", "0000", "00000"]
        .into_iter()
        .find(|z| !column_type.contains(&format!("'{z}'")))
        .map(str::to_string)
}

/// What the loader needs to know about a table (the manifest's `properties`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TableProps {
    pub(crate) columns: Vec<Col>,
    #[serde(default)]
    pub(crate) versioned: bool,
}

impl TableProps {
    pub(crate) fn from_entry(t: &TableEntry) -> Result<Self> {
        let v = serde_json::Value::Object(t.properties.clone().into_iter().collect());
        serde_json::from_value(v).map_err(|e| {
            Error::InvalidInput(format!("table {} has no usable MySQL column list: {e}", t.display_name()))
        })
    }

    pub(crate) fn into_properties(self) -> std::collections::BTreeMap<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    Base,
    Versioned,
    Sequence,
}

/// One table of the snapshot: its dumped columns, primary key (name, data type) and size.
#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    pub(crate) name: String,
    pub(crate) kind: TableKind,
    pub(crate) cols: Vec<Col>,
    pub(crate) pk: Vec<(String, String)>,
    pub(crate) data_length: u64,
}

/// Base tables, system-versioned tables and sequences of `db` (no views), with their columns.
pub(crate) async fn list_tables(c: &mut Conn, db: &str) -> Result<Vec<TableInfo>> {
    let rows = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME, TABLE_TYPE, IFNULL(DATA_LENGTH, 0) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = {} AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
            qs(db)
        ),
    )
    .await?;
    let cols = query_text(
        c,
        &format!(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, EXTRA, IFNULL(GENERATION_EXPRESSION, ''), COLUMN_KEY, COLUMN_TYPE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME, ORDINAL_POSITION",
            qs(db)
        ),
    )
    .await?;
    let pks = query_text(
        c,
        &format!(
            "SELECT s.TABLE_NAME, s.COLUMN_NAME, c.DATA_TYPE FROM information_schema.STATISTICS s \
             JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME \
             AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = {} AND s.INDEX_NAME = 'PRIMARY' \
             ORDER BY s.TABLE_NAME, s.SEQ_IN_INDEX",
            qs(db)
        ),
    )
    .await?;
    let of = |rows: &'_ [Vec<Option<String>>], name: &str| -> Vec<Vec<Option<String>>> {
        rows.iter().filter(|r| r.first().cloned().flatten().as_deref() == Some(name)).cloned().collect()
    };
    let mut out = Vec::new();
    for r in rows {
        let name = r.first().cloned().flatten().unwrap_or_default();
        let kind = match r.get(1).cloned().flatten().unwrap_or_default().as_str() {
            "SEQUENCE" => TableKind::Sequence,
            "SYSTEM VERSIONED" => TableKind::Versioned,
            _ => TableKind::Base,
        };
        let data_length = r.get(2).cloned().flatten().and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut tcols = dumped_columns(&name, &of(&cols, &name))?;
        if kind == TableKind::Versioned && !tcols.iter().any(|c| c.kind == ColKind::Period) {
            // Implicit period columns are hidden from information_schema but selectable by name.
            tcols.push(Col::new("ROW_START".into(), ColKind::Period));
            tcols.push(Col::new("ROW_END".into(), ColKind::Period));
        }
        let pk = of(&pks, &name)
            .iter()
            .map(|p| {
                (
                    p.get(1).cloned().flatten().unwrap_or_default(),
                    p.get(2).cloned().flatten().unwrap_or_default(),
                )
            })
            .collect();
        out.push(TableInfo { name, kind, cols: tcols, pk, data_length });
    }
    Ok(out)
}

/// The dumped columns of table `name` from its `information_schema.COLUMNS` rows (generated
/// columns are left out: the server computes them again).
fn dumped_columns(name: &str, cols: &[Vec<Option<String>>]) -> Result<Vec<Col>> {
    let mut tcols = Vec::new();
    for c in cols {
        let cname = c.get(1).cloned().flatten().unwrap_or_default();
        let dtype = c.get(2).cloned().flatten().unwrap_or_default().to_ascii_lowercase();
        let extra = c.get(3).cloned().flatten().unwrap_or_default().to_ascii_uppercase();
        let gen_expr = c.get(4).cloned().flatten().unwrap_or_default();
        let column_type = c.get(6).cloned().flatten().unwrap_or_default();
        // Explicitly named period columns show `ROW START`/`ROW END` as their generation
        // expression (EXTRA says only `STORED GENERATED`).
        let period = |s: &str| s.contains("ROW START") || s.contains("ROW END");
        let ck = if period(&extra) || period(&gen_expr.to_ascii_uppercase()) {
            ColKind::Period
        } else if extra.contains("GENERATED") || extra.contains("PERSISTENT") || !gen_expr.is_empty() {
            continue;
        } else if dtype == "bit" {
            ColKind::Bit
        } else if dtype == "float" {
            ColKind::Float
        } else if TEXT_FORM_TYPES.contains(&dtype.as_str()) {
            ColKind::TextForm
        } else if dtype == "enum" {
            let Some(zero) = enum_zero(&column_type) else {
                return Err(Error::Unsupported(format!(
                    "column {cname} of table {name}: an ENUM whose members include '', '0', ... '00000' \
                     has no text left for its error value"
                )));
            };
            tcols.push(Col { name: cname, kind: ColKind::Enum, zero: Some(zero) });
            continue;
        } else {
            ColKind::Plain
        };
        tcols.push(Col::new(cname, ck));
    }
    Ok(tcols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_error_value_text_is_not_a_member() {
        assert_eq!(enum_zero("enum('x','y')").as_deref(), Some(""));
        assert_eq!(enum_zero("enum('','0','z')").as_deref(), Some("00"));
        assert_eq!(enum_zero("enum('','0','00','000','0000','00000')"), None);
    }
}
