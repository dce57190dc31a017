//! A dry run's copy of the ledger: every table in memory but the catalogs, which are read from
//! the file in place, so a snapshot's memory stays flat in the size of what was backed up.

use std::path::Path;

use rusqlite::Connection;

use super::sql::sqlite_error;
use super::LedgerError;

/// The schema under which the ledger file is attached to the snapshot.
pub(super) const ORIGIN: &str = "origin";

/// Copies the ledger at `path` into `memory` (tables with their rowids, indexes, triggers and
/// schema version) except the catalogs' rows, and leaves the file attached read-only as
/// [`ORIGIN`]. Returns whether the file has catalogs to be read there.
pub(super) fn copy_into_memory(memory: &Connection, path: &Path) -> Result<bool, LedgerError> {
    let read = |context| sqlite_error(path, context);
    memory
        .execute(
            &format!("ATTACH DATABASE ?1 AS {ORIGIN}"),
            [read_only_uri(path)],
        )
        .map_err(read("cannot open read-only"))?;
    let schema = origin_schema(memory).map_err(read("cannot read the schema"))?;
    let tx = memory
        .unchecked_transaction()
        .map_err(read("cannot start a copy"))?;
    for object in schema.iter().filter(|o| o.kind == "table") {
        tx.execute_batch(&object.sql)
            .map_err(read("cannot copy a table"))?;
        if object.name != "catalogs" {
            copy_rows(&tx, object).map_err(read("cannot copy a table"))?;
        }
    }
    for object in schema.iter().filter(|o| o.kind != "table") {
        tx.execute_batch(&object.sql)
            .map_err(read("cannot copy an index"))?;
    }
    let version: i64 = tx
        .query_row(&format!("PRAGMA {ORIGIN}.user_version"), [], |r| r.get(0))
        .map_err(read("cannot read the schema version"))?;
    tx.pragma_update(None, "user_version", version)
        .and_then(|()| tx.commit())
        .map_err(read("cannot copy"))?;
    Ok(schema
        .iter()
        .any(|o| o.kind == "table" && o.name == "catalogs"))
}

struct SchemaObject {
    kind: String,
    name: String,
    sql: String,
}

/// The file's tables, then its indexes, triggers and views, in the order they were made;
/// SQLite's own objects (made with the tables) are left out.
fn origin_schema(memory: &Connection) -> rusqlite::Result<Vec<SchemaObject>> {
    let mut stmt = memory.prepare(&format!(
        "SELECT type, name, sql FROM {ORIGIN}.sqlite_master \
         WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok(SchemaObject {
            kind: r.get(0)?,
            name: r.get(1)?,
            sql: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Copies a table's rows with their rowids, which listings page by.
fn copy_rows(tx: &rusqlite::Transaction<'_>, table: &SchemaObject) -> rusqlite::Result<()> {
    let columns: Vec<String> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT name FROM pragma_table_info(?1, '{ORIGIN}') ORDER BY cid"
        ))?;
        let names = stmt.query_map([&table.name], |r| r.get::<_, String>(0))?;
        names
            .map(|name| name.map(|n| quoted(&n)))
            .collect::<Result<_, _>>()?
    };
    let columns = columns.join(", ");
    let name = quoted(&table.name);
    let rowid = if table.sql.to_ascii_uppercase().contains("WITHOUT ROWID") {
        ""
    } else {
        "rowid, "
    };
    tx.execute_batch(&format!(
        "INSERT INTO main.{name} ({rowid}{columns}) \
         SELECT {rowid}{columns} FROM {ORIGIN}.{name}"
    ))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `path` as an SQLite URI opened read-only: a dry run never writes the file, not even a hot
/// journal's rollback.
fn read_only_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?mode=ro");
    uri
}
