//! Table-level facts for write-heavy experiments: the workload run before measurement,
//! HOT updates, dead tuples and bloat around it, and what VACUUM / VACUUM FULL cost
//! and reclaim.

use std::time::Instant;

use anyhow::Result;
use postgres::Client;

use super::result::{Maintenance, TableStats, WorkloadResult};
use crate::error::describe_pg_error;

/// Leaf partitions of table `$1`, or the table itself when it is not partitioned
/// (pg_partition_tree returns no rows for a plain table).
const LEAVES: &str = "WITH leaves AS (SELECT relid FROM pg_partition_tree($1::text::regclass) WHERE isleaf \
     UNION ALL SELECT $1::text::regclass WHERE NOT EXISTS (SELECT 1 FROM pg_partition_tree($1::text::regclass)))";

/// pgstattuple gives exact dead-tuple and free-space shares; pgx creates it in its own
/// copy when the server has it, and reports those numbers as absent otherwise.
pub fn enable_pgstattuple(client: &mut Client) -> bool {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        .is_ok()
}

/// Counters of each table, summed over its leaf partitions. The backend's pending
/// statistics are flushed first, so the counters include this session's own writes.
pub fn snapshot(
    client: &mut Client,
    tables: &[String],
    pgstattuple: bool,
) -> Result<Vec<(String, TableStats)>> {
    // Flushed when this session next goes idle, i.e. before the reads below.
    client.batch_execute("SELECT pg_stat_force_next_flush()")?;
    client.batch_execute("SELECT 1")?;
    let mut out = Vec::new();
    for table in tables {
        let row = client.query_one(
            &format!("{LEAVES} SELECT coalesce(sum(s.n_tup_ins), 0)::bigint, coalesce(sum(s.n_tup_upd), 0)::bigint, \
                    coalesce(sum(s.n_tup_hot_upd), 0)::bigint, coalesce(sum(s.n_tup_del), 0)::bigint, \
                    coalesce(sum(s.n_live_tup), 0)::bigint, coalesce(sum(s.n_dead_tup), 0)::bigint, \
                    coalesce(sum(s.vacuum_count), 0)::bigint, coalesce(sum(s.autovacuum_count), 0)::bigint, \
                    coalesce(sum(pg_table_size(t.relid)), 0)::bigint, coalesce(sum(pg_indexes_size(t.relid)), 0)::bigint \
             FROM leaves t JOIN pg_stat_user_tables s ON s.relid = t.relid"),
            &[table],
        ).map_err(|e| crate::error::described(format!("table_stats {table}: {}", describe_pg_error(&e, None)), e))?;
        let mut stats = TableStats {
            inserted: row.get(0),
            updated: row.get(1),
            hot_updated: row.get(2),
            deleted: row.get(3),
            live_tuples: row.get(4),
            dead_tuples: row.get(5),
            vacuums: row.get(6),
            autovacuums: row.get(7),
            table_bytes: row.get(8),
            index_bytes: row.get(9),
            dead_tuple_percent: None,
            free_percent: None,
        };
        if pgstattuple {
            let row = client.query_one(
                &format!("{LEAVES} SELECT sum(p.table_len)::float8, sum(p.dead_tuple_len)::float8, sum(p.free_space)::float8 \
                 FROM leaves t CROSS JOIN LATERAL pgstattuple(t.relid) p"),
                &[table],
            )?;
            let (len, dead, free): (Option<f64>, Option<f64>, Option<f64>) =
                (row.get(0), row.get(1), row.get(2));
            if let (Some(len), Some(dead), Some(free)) = (len, dead, free)
                && len > 0.0
            {
                stats.dead_tuple_percent = Some(100.0 * dead / len);
                stats.free_percent = Some(100.0 * free / len);
            }
        }
        out.push((table.clone(), stats));
    }
    Ok(out)
}

/// Run the workload's batches, each in its own transaction, with seeded random().
pub fn run_workload(
    client: &mut Client,
    batches: usize,
    seed: f64,
    sql: &str,
) -> Result<WorkloadResult> {
    client.batch_execute(&format!("SELECT setseed({})", seed.clamp(-1.0, 1.0)))?;
    let started = Instant::now();
    let mut batch_ms = Vec::with_capacity(batches);
    for batch in 0..batches {
        crate::interrupt::check()?;
        let t = Instant::now();
        let _cancel = crate::interrupt::CancelOnInterrupt::new(client);
        let mut tx = client.transaction()?;
        tx.batch_execute(sql).map_err(|e| {
            anyhow::anyhow!(
                "workload batch {}: {}",
                batch + 1,
                describe_pg_error(&e, Some(sql))
            )
        })?;
        tx.commit()?;
        batch_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(WorkloadResult {
        batches,
        seconds: started.elapsed().as_secs_f64(),
        batch_ms: crate::stats::summarize(&batch_ms),
    })
}

/// VACUUM, then VACUUM FULL, timed, with the table's total size before and after each.
pub fn maintenance(client: &mut Client, tables: &[String]) -> Result<Vec<Maintenance>> {
    let size = |client: &mut Client, table: &str| -> Result<i64> {
        Ok(client
            .query_one(
                &format!("{LEAVES} SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM leaves"),
                &[&table],
            )?
            .get(0))
    };
    let mut out = Vec::new();
    for table in tables {
        crate::interrupt::check()?;
        // The server's own quoting of the name (also rejects anything that is not a table).
        let quoted: String = client
            .query_one("SELECT $1::text::regclass::text", &[table])?
            .get(0);
        let bytes_before = size(client, table)?;
        let t = Instant::now();
        client.batch_execute(&format!("VACUUM {quoted}"))?;
        let vacuum_seconds = t.elapsed().as_secs_f64();
        let bytes_after_vacuum = size(client, table)?;
        let t = Instant::now();
        client.batch_execute(&format!("VACUUM FULL {quoted}"))?;
        let vacuum_full_seconds = t.elapsed().as_secs_f64();
        out.push(Maintenance {
            table: table.clone(),
            bytes_before,
            vacuum_seconds,
            bytes_after_vacuum,
            vacuum_full_seconds,
            bytes_after_vacuum_full: size(client, table)?,
        });
    }
    Ok(out)
}
