//! What only the schema knows (is this table partitioned, into what; is this index a
//! partitioned one), asked of a scratch database that has every migration applied, and
//! where the promoted migration is then tried before it is written.

use anyhow::Result;
use postgres::Client;

use crate::db::quote_ident;
use crate::error::{describe_pg_error, fail};
use crate::experiment::databases::drop_owned_database;
use crate::target::{Target, connect};

const MARK: &str = "pgx:promote scratch schema";

/// A database of pgx's own holding the schema `migrations/` builds, dropped when this
/// guard goes away (also on error or Ctrl-C).
pub struct Scratch {
    pub name: String,
    admin: postgres::Config,
    config: postgres::Config,
}

impl Scratch {
    pub fn create(target: &Target) -> Result<Scratch> {
        let mut admin = connect(&target.admin_config())?;
        crate::experiment::databases::check_can_create_databases(&mut admin)?;
        let name = format!("pgx_promote_{}", std::process::id());
        drop_owned_database(&mut admin, &name)?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
                quote_ident(&name)
            ))
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the scratch database {name}: {}",
                    describe_pg_error(&e, None)
                )
            })?;
        crate::experiment::databases::mark_database(&mut admin, &name, MARK)?;
        Ok(Scratch {
            config: target.config_for(&name),
            admin: target.admin_config(),
            name,
        })
    }

    pub fn connect(&self) -> Result<Client> {
        connect(&self.config)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let dropped = crate::experiment::databases::when_server_is_up(
            &self.admin,
            &format!("drop {}", self.name),
            |admin| drop_owned_database(admin, &self.name),
        );
        if let Err(err) = dropped {
            crate::note!(
                "pgx: could not drop the scratch database {}: {err:#}",
                self.name
            );
        }
    }
}

/// A table or partition, with its names quoted for SQL.
#[derive(Debug, Clone)]
pub struct Relation {
    pub oid: u32,
    /// `"dms"."reference_00"`, as quote_ident writes it (quotes only where needed).
    pub qualified: String,
    /// Schema, quoted.
    pub schema: String,
    /// The relation's own name, unquoted (for deriving index names).
    pub name: String,
}

/// A table as the schema has it: its partitions, when it is partitioned.
#[derive(Debug, Clone)]
pub struct Table {
    pub relation: Relation,
    pub partitioned: bool,
    /// Every partition below it (all levels), parents before their children:
    /// (partition, its parent's oid, whether it is a leaf).
    pub partitions: Vec<(Relation, u32, bool)>,
}

impl Table {
    pub fn leaves(&self) -> usize {
        self.partitions.iter().filter(|(_, _, leaf)| *leaf).count()
    }
}

/// The table a statement names (as written), or None when the schema has no such table.
pub fn table(client: &mut Client, written: &str) -> Result<Option<Table>> {
    let Some(row) = client.query_opt(
        "SELECT c.oid, quote_ident(n.nspname), c.relname::text, c.relkind::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p', 'm')",
        &[&written],
    )?
    else {
        return Ok(None);
    };
    let (oid, schema, name, kind): (u32, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let relation = Relation {
        oid,
        qualified: qualified(client, &schema, &name)?,
        schema,
        name,
    };
    let mut partitions = Vec::new();
    if kind == "p" {
        let rows = client.query(
            "SELECT t.relid::oid, t.parentrelid::oid, t.isleaf, quote_ident(n.nspname), c.relname::text
             FROM pg_partition_tree($1::oid::regclass) t
             JOIN pg_class c ON c.oid = t.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE t.level > 0
             ORDER BY t.level, c.relname",
            &[&oid],
        )?;
        for row in rows {
            let (poid, parent, leaf, schema, name): (u32, u32, bool, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            partitions.push((
                Relation {
                    oid: poid,
                    qualified: qualified(client, &schema, &name)?,
                    schema,
                    name,
                },
                parent,
                leaf,
            ));
        }
    }
    Ok(Some(Table {
        relation,
        partitioned: kind == "p",
        partitions,
    }))
}

fn qualified(client: &mut Client, schema: &str, name: &str) -> Result<String> {
    Ok(format!("{schema}.{}", quote(client, name)?))
}

/// quote_ident as the server does it: bare when it can be, quoted when it must be.
pub fn quote(client: &mut Client, raw: &str) -> Result<String> {
    Ok(client.query_one("SELECT quote_ident($1)", &[&raw])?.get(0))
}

/// An identifier as written (`Idx`, `"Idx"`) as the name PostgreSQL stores (`idx`, `Idx`).
pub fn identifier(client: &mut Client, written: &str) -> Result<String> {
    let row = client
        .query_one("SELECT (parse_ident($1))[1]", &[&written])
        .map_err(|e| {
            fail(
                format!(
                    "{written:?} is not a valid identifier: {}",
                    describe_pg_error(&e, None)
                ),
                "name the index in the experiment with a plain identifier",
            )
        })?;
    Ok(row.get(0))
}

#[derive(Debug, Clone, PartialEq)]
pub enum IndexKind {
    /// An index of a plain table (or of one partition).
    Plain,
    /// The index of a partitioned table.
    Partitioned,
    /// Not in the schema `migrations/` builds.
    Missing,
}

/// What a `DROP INDEX` names.
#[derive(Debug, Clone)]
pub struct Index {
    pub kind: IndexKind,
    /// Schema-qualified and quoted, when it exists.
    pub qualified: Option<String>,
    /// Its table, qualified, and how many partitions that table has below it.
    pub table: Option<String>,
    pub partitions: usize,
}

pub fn index(client: &mut Client, written: &str) -> Result<Index> {
    let row = client.query_opt(
        "SELECT c.relkind::text, quote_ident(n.nspname), c.relname::text, i.indrelid::regclass::text,
                (SELECT count(*) FROM pg_partition_tree(i.indrelid::regclass) WHERE level > 0)
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         LEFT JOIN pg_index i ON i.indexrelid = c.oid
         WHERE c.oid = to_regclass($1)",
        &[&written],
    )?;
    let Some(row) = row else {
        return Ok(Index {
            kind: IndexKind::Missing,
            qualified: None,
            table: None,
            partitions: 0,
        });
    };
    let (kind, schema, name, table, partitions): (String, String, String, Option<String>, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let kind = match kind.as_str() {
        "i" => IndexKind::Plain,
        "I" => IndexKind::Partitioned,
        _ => {
            return Err(fail(
                format!("{written} is not an index in the schema migrations/ build"),
                "DROP INDEX names an index",
            ));
        }
    };
    Ok(Index {
        kind,
        qualified: Some(qualified(client, &schema, &name)?),
        table,
        partitions: usize::try_from(partitions).unwrap_or(0),
    })
}

/// Does an index of that (unquoted) name exist in that (quoted) schema?
pub fn index_exists(client: &mut Client, schema: &str, name: &str) -> Result<bool> {
    let qualified = format!("{schema}.{}", quote(client, name)?);
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])?
        .get(0))
}

/// `pg_index.indisvalid` of an index (None: no such index).
pub fn index_valid(client: &mut Client, qualified: &str) -> Result<Option<bool>> {
    Ok(client
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
            &[&qualified],
        )?
        .map(|row| row.get(0)))
}
