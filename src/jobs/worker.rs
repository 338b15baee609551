//! One worker of a bulk run: an SSH session (reconnected with backoff when
//! it breaks) serving items from the shared queue until it is empty.

use std::sync::Arc;
use std::time::Instant;

use backon::BackoffBuilder;

use crate::backoff;
use crate::error::is_permanent;
use crate::events::Event;
use crate::jobs::attempt::Attempt;
use crate::jobs::scheduler::{serve, Idle};
use crate::jobs::shared::{finish, next, Options, Plan, Shared};
use crate::link::Link;
use crate::ssh::Session;

/// Serve items until the queue is empty, a failure stops the run, or a signal comes.
pub(super) async fn worker(
    plan: Arc<Plan>,
    opts: Arc<Options>,
    shared: Arc<Shared>,
    mut first: Option<(&Session, Link<'_>)>,
) {
    let mut current: Option<Attempt> = None;
    let mut connect_delays = backoff::passing_failure().build();
    let mut connect_failures = 0;
    loop {
        if current.is_none() {
            current = next(&shared);
        }
        let Some(attempt) = current.as_mut() else { return };
        if let Some((session, link)) = first.take() {
            let idle = vec![Idle { link, ready_at: Instant::now(), used: true }];
            let serving = serve(session, idle, &plan, &opts, &shared, &mut current);
            // The caller closes its session.
            if interruptible(&shared, serving).await.is_none() {
                return;
            }
            continue;
        }
        let connecting = Session::connect(&plan.target, plan.events.clone());
        let Some(connected) = interruptible(&shared, connecting).await else { return };
        let session = match connected {
            Ok(s) => s,
            Err(e) => {
                connect_failures += 1;
                if connect_failures > opts.retries || is_permanent(&e) {
                    let attempt = current.take().unwrap();
                    finish(&plan, &shared, &opts, attempt, Some(e));
                    continue;
                }
                let delay = backoff::next_pause(&mut connect_delays);
                attempt.tell(&plan.events, Event::Reconnecting { error: format!("{e:#}"), delay });
                if interruptible(&shared, tokio::time::sleep(delay)).await.is_none() {
                    return;
                }
                continue;
            }
        };
        connect_failures = 0;
        let served = interruptible(&shared, serve(&session, Vec::new(), &plan, &opts, &shared, &mut current)).await;
        // Ends every helper the session started on the server (relay, shell, reclaimer).
        session.close().await;
        if served.is_none() {
            return;
        }
    }
}

/// `work`, unless a signal comes first (then None, and `work` is dropped where it is).
async fn interruptible<T>(shared: &Shared, work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        _ = shared.interrupt.wait() => None,
    }
}
