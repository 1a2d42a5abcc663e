//! Cache states: a cold cell reads its blocks, a warm one does not, a prewarmed one
//! matches warm. Making cells cold restarts the shared embedded server, which no other
//! test may be using at the time: the test has it to itself (`exclusive`).

use std::path::Path;

use crate::common::*;
use pgx::experiment::result::{Cell, ExperimentResult};
use pgx::experiment::{RunOptions, progress::Progress, spec};
use pgx::target::Target;

fn cell<'a>(r: &'a ExperimentResult, cache: &str) -> &'a Cell {
    r.cells
        .iter()
        .find(|c| c.variant == "plain" && c.cache == cache)
        .unwrap_or_else(|| panic!("no {cache} cell"))
}

fn reads(c: &Cell) -> Vec<u64> {
    c.samples.iter().map(|s| s.buffers.shared_read).collect()
}

#[test]
fn cold_cells_read_their_blocks_warm_ones_do_not_and_prewarmed_match_warm() {
    let _alone = exclusive();
    let server = server();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/experiments/cache.yaml");
    let spec = spec::read(&path).unwrap();
    let relpages: i64 = {
        let r = pgx::experiment::prepare_dataset(
            &Target::External(server.cluster().config("postgres")),
            &spec,
            &RunOptions::default(),
            &mut Progress::quiet(),
        )
        .unwrap();
        let mut base = pgx::target::connect(&server.cluster().config(&r.database)).unwrap();
        base.query_one(
            "SELECT relpages::bigint FROM pg_class WHERE relname = 't'",
            &[],
        )
        .unwrap()
        .get(0)
    };

    // On pgx's own server: a restart empties shared buffers, posix_fadvise the page cache.
    let embedded = Target::Embedded(server.cluster().attach().unwrap());
    let r = pgx::experiment::run(
        &embedded,
        &spec,
        &RunOptions::default(),
        &mut Progress::quiet(),
    )
    .unwrap();
    let (warm, cold, prewarmed) = (cell(&r, "warm"), cell(&r, "cold"), cell(&r, "prewarmed"));
    for c in [warm, cold, prewarmed] {
        assert!(c.error.is_none(), "{}: {:?}", c.cache, c.error);
        assert!(c.eviction.is_none(), "fully evicted: {:?}", c.eviction);
    }
    assert!(
        reads(warm).iter().all(|&n| n == 0),
        "warm after warmups reads nothing: {:?}",
        reads(warm)
    );
    assert!(
        reads(cold).iter().all(|&n| n as i64 >= relpages),
        "every cold run reads the whole table ({relpages} pages): {:?}",
        reads(cold)
    );
    assert!(
        reads(prewarmed).iter().all(|&n| n == 0),
        "prewarmed reads nothing: {:?}",
        reads(prewarmed)
    );
    let hit = |c: &Cell| c.plan.as_ref().unwrap().buffers.shared_hit;
    assert_eq!(
        hit(prewarmed),
        hit(warm),
        "prewarmed touches what warm touches"
    );
    assert!(
        (3..=6).contains(&cold.samples.len()),
        "a cold cell runs from the first look to the schedule's rounds: {}",
        cold.samples.len()
    );
    let wall = r.wall.as_ref().expect("the run records its wall time");
    assert!(
        wall.evictions > 0.0 && wall.other() < wall.total,
        "the restarts are named in the wall time: {wall:?}"
    );
    // The cold cell is compared with the baseline's cold cell... here the baseline is
    // the only variant, so its cold cell is a reference, and the control is compared
    // with it: the control's cold cell exists and references the baseline's.
    let control_cold = r
        .cells
        .iter()
        .find(|c| Some(&c.variant) == r.control.as_ref() && c.cache == "cold")
        .unwrap();
    assert_eq!(
        control_cold.reference.map(|i| r.cells[i].cache.as_str()),
        Some("cold")
    );
    let md = pgx::report::markdown::render(&r);
    assert!(
        md.contains("plain · cold") && md.contains("I/O read"),
        "{md}"
    );
    // The answer says what a cold start costs the baseline, state by state.
    let by_state = pgx::report::answer::lines(&r)
        .into_iter()
        .find(|l| l.contains("by cache state"))
        .expect("a line per query with the baseline's time in every cache state");
    assert!(
        by_state.contains("warm ") && by_state.contains("cold ") && by_state.contains("prewarmed "),
        "{by_state}"
    );
    drop(embedded);

    // On a server pgx does not run, shared buffers cannot be emptied: the cell says so.
    let external = Target::External(server.cluster().config("postgres"));
    let options = RunOptions {
        repeat: Some(2),
        control: Some(false),
        ..Default::default()
    };
    let r = pgx::experiment::run(&external, &spec, &options, &mut Progress::quiet()).unwrap();
    let cold = cell(&r, "cold");
    let note = cold.eviction.as_deref().unwrap_or("");
    assert!(note.contains("shared buffers were not evicted"), "{note:?}");
    assert!(
        pgx::report::markdown::render(&r).contains("Cold cells were not fully cold"),
        "the report says which eviction was not possible"
    );
}
