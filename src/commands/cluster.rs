//! `pgx cluster start|stop|status|destroy`: the embedded PostgreSQL.

use anyhow::Result;

use crate::cli::ClusterAction;
use crate::cluster::{self, State};
use crate::say;
use crate::target::{TargetOptions, embedded_cluster};

pub fn run(options: &TargetOptions, action: ClusterAction) -> Result<u8> {
    let cluster = embedded_cluster(options)?;
    match action {
        ClusterAction::Start => {
            cluster.start()?;
            cluster.keep_running();
            // The psql command names the database apply and status use: make it exist.
            crate::target::ensure_default_database(&cluster)?;
            say!(
                "embedded PostgreSQL running; {}",
                psql_hint(&cluster, cluster::DEFAULT_DATABASE)
            )?;
        }
        ClusterAction::Stop => {
            cluster.stop()?;
            say!("embedded PostgreSQL stopped")?;
        }
        ClusterAction::Status => {
            let state = cluster.state()?;
            say!("data directory: {}", cluster.data_dir().display())?;
            say!("server: {}", cluster.bindir.display())?;
            match state {
                State::NotInitialized => {
                    say!("state: not initialised (pgx initialises it on first use)")?
                }
                State::Stopped => say!("state: stopped")?,
                State::Running => {
                    let db = if crate::target::default_database_exists(&cluster)? {
                        cluster::DEFAULT_DATABASE
                    } else {
                        "postgres"
                    };
                    say!("state: running; {}", psql_hint(&cluster, db))?
                }
            }
            return Ok(if state == State::Running {
                crate::exit::OK
            } else {
                crate::exit::NOT_RUNNING
            });
        }
        ClusterAction::Destroy => {
            cluster.destroy()?;
            say!("embedded PostgreSQL removed ({})", cluster.root.display())?;
        }
    }
    Ok(crate::exit::OK)
}

fn psql_hint(cluster: &cluster::Cluster, dbname: &str) -> String {
    format!(
        "connect with: psql -h {} -p {} -U {} {}",
        cluster.socket_dir().display(),
        cluster::PORT,
        cluster::SUPERUSER,
        dbname
    )
}
