//! `status`: one QUANTUM.STATUS call, shown as a table (or as JSON).

use super::Done;
use crate::cli::Cli;
use crate::commands::{self, Outcome};
use crate::connect::Link;
use crate::console;
use crate::failure::Failure;
use crate::report::{Details, RunResult};
use std::time::Instant;

pub fn status(cli: &Cli, con: &mut Link, deadline: Instant) -> Result<Done, Failure> {
    match commands::status(cli, con, deadline)? {
        Outcome::Done(report) => {
            if !cli.json {
                console::out(&report.table(&cli.stream, &cli.group));
            }
            let fields = format!("pending={} consumers={}", report.pending, report.total());
            let unlisted = report.unlisted();
            let details = Details::Status { report, unlisted };
            Ok(Done::success(RunResult::Success, fields, details))
        }
        Outcome::Refused(m) => Ok(Done::skipped(
            RunResult::Refused,
            Some(&super::scope(cli)),
            m,
        )),
        Outcome::Absent(m) => Ok(Done::skipped(
            RunResult::Absent,
            Some(&super::scope(cli)),
            format!("nothing to show: {m}"),
        )),
    }
}
