//! `demo`: the teaching demo ([`crate::demo`]), as a subcommand.

use std::path::PathBuf;

use anyhow::Result;

use crate::demo::acts::{self, Script};
use crate::demo::{self, Outputs};
use crate::jobs::Plan;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The remote file to download on each transfer (a small one)
    pub remote: String,
    /// Transfers on one control connection, back to back
    #[arg(long = "transfers", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub transfers: u32,
    /// Remedies to show, one per TIME_WAIT collision, in this order
    #[arg(long = "remedies", value_enum, value_delimiter = ',', default_value = "wait,rotate,reclaim")]
    pub remedies: Vec<crate::timewait::Pace>,
    /// Readings of the TIME_WAIT countdown after each transfer, one a second
    #[arg(long = "watch", value_name = "N", default_value_t = 3)]
    pub watch: u32,
    /// Wait for Enter between steps (on a terminal; without one the run goes straight through)
    #[arg(long = "step")]
    pub step: bool,
    /// Where to write the timeline (SVG); the HTML page goes beside it (.html)
    #[arg(long = "timeline", value_name = "FILE", default_value = "ftpssh-demo.svg")]
    pub timeline: PathBuf,
}

/// Run it.
pub async fn run(plan: &Plan, args: &DemoArgs) -> Result<i32> {
    let scratch = acts::scratch_dir()?;
    let script = Script {
        remote: args.remote.clone(),
        transfers: args.transfers,
        remedies: args.remedies.clone(),
        watch: args.watch,
        scratch,
    };
    let outputs = Outputs { svg: args.timeline.clone(), html: args.timeline.with_extension("html") };
    demo::run(plan, script, args.step, &outputs).await?;
    Ok(0)
}
