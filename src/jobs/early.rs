//! Workers started while an `mget` (or `mirror`) still lists: with `--jobs N`,
//! the other N-1 workers connect their SSH sessions and open their links
//! meanwhile, instead of after the listing. Each link takes an SSH handshake,
//! the relay's start, an FTP login and a forward, long enough for the first
//! worker to do a good part of a short run alone
//! (docs/benchmarks.md#measured-effects).
//!
//! They follow the listing link, so that nothing is tried N times that fails
//! once: they are started only once the first SSH session has connected (its
//! host key checked, its authentication accepted), and open their links at
//! once but send the FTP password only once the listing link's was accepted
//! (a wrong one is sent once; [`PasswordGate`]). Everything before PASS (the
//! relay, the greeting, USER, the forward) overlaps the listing link's login
//! where their SSH sessions are up in time.
//! A connection or link they could not make is made again, and its failure
//! reported, by the worker's usual path once the items come.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::credentials::PasswordGate;
use crate::jobs::shared::{Options, Plan, Shared};
use crate::jobs::worker;
use crate::link::Link;
use crate::ssh::Session;

/// How far the listing has come.
#[derive(Clone)]
enum Stage {
    /// Connect the SSH session, open a link, and wait.
    Prepare,
    /// The items: serve them.
    Run(Arc<Options>, Arc<Shared>),
    /// No run (a dry run, a failed listing, a signal), or one that settled
    /// before this worker was ready: close what was opened.
    Stop,
}

/// The workers started early, and how they are told what comes next.
pub struct Early {
    stage: watch::Sender<Stage>,
    /// Opens their links' password gates.
    accepted: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl Early {
    /// Start `count` workers (none if 0): call once the first SSH session has connected.
    pub fn start(plan: &Plan, count: usize) -> Early {
        let (stage, _) = watch::channel(Stage::Prepare);
        let (accepted, gate) = PasswordGate::new();
        let plan = Arc::new(plan.clone());
        let workers =
            (0..count).map(|_| tokio::spawn(early_worker(plan.clone(), gate.clone(), stage.subscribe()))).collect();
        Early { stage, accepted, workers }
    }

    /// The listing link has logged in: the others may send the password.
    pub fn logged_in(&self) {
        self.accepted.send_replace(true);
    }

    /// Hand them the run.
    pub(super) fn run(self, opts: Arc<Options>, shared: Arc<Shared>) -> Running {
        self.stage.send_replace(Stage::Run(opts, shared));
        Running { stage: self.stage, workers: self.workers }
    }

    /// No run: they close what they opened.
    pub async fn stop(self) {
        self.stage.send_replace(Stage::Stop);
        for w in self.workers {
            let _ = w.await;
        }
    }
}

/// The early workers, running.
pub(super) struct Running {
    stage: watch::Sender<Stage>,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Wait for them. Once the run has settled (every item ended, or a failure
    /// stopped it), one still connecting or logging in is told to stop: it
    /// would find nothing to do, and the run would wait for its login (ProFTPD
    /// greets a connection late right after a session ends; a server that
    /// never greets it would hold the run for the whole FTP timeout).
    pub(super) async fn join(self, shared: &Shared) {
        let mut settled = shared.settled.subscribe();
        let all = async {
            for w in self.workers {
                let _ = w.await;
            }
        };
        tokio::pin!(all);
        tokio::select! {
            () = &mut all => return,
            _ = settled.wait_for(|s| *s) => {}
        }
        // Those already serving are past the stage: they see the empty queue themselves.
        self.stage.send_replace(Stage::Stop);
        all.await;
    }
}

async fn early_worker(plan: Arc<Plan>, gate: PasswordGate, mut stage: watch::Receiver<Stage>) {
    let session = match until_stopped(&mut stage, Session::connect(&plan.target, plan.events.clone())).await {
        Some(Ok(session)) => Some(session),
        Some(Err(_)) => None, // the worker's usual path connects again, and reports
        None => return,
    };
    let link = match &session {
        Some(session) => {
            let mut spec = plan.spec.clone();
            spec.login.gate = Some(gate);
            // None: not opened (the worker's usual path opens another), or no run.
            until_stopped(&mut stage, Link::open(session, &spec)).await.and_then(Result::ok)
        }
        None => None,
    };
    let run = match stage.wait_for(|s| matches!(s, Stage::Run(..) | Stage::Stop)).await.map(|s| s.clone()) {
        Ok(Stage::Run(opts, shared)) => Some((opts, shared)),
        _ => None,
    };
    match (run, session.as_ref(), link) {
        (Some((opts, shared)), Some(session), Some(link)) => {
            worker::worker(plan, opts, shared, Some((session, link))).await;
            session.close().await; // ends every helper the session started on the server
        }
        (run, connected, link) => {
            if let Some(link) = link {
                link.close().await;
            }
            if let Some(session) = connected {
                session.close().await;
            }
            if let Some((opts, shared)) = run {
                worker::worker(plan, opts, shared, None).await; // connects with retries, and reports
            }
        }
    }; // (the tuple's link borrows `session`: dropped here, before it)
}

/// `work`, unless the run stops first (None).
async fn until_stopped<T>(stage: &mut watch::Receiver<Stage>, work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        _ = stopped(stage) => None,
    }
}

/// Once the run stops: no run, or it settled before this worker was ready
/// ([`Running::join`]). A dropped sender (a panic) stops nothing.
async fn stopped(stage: &mut watch::Receiver<Stage>) {
    let gone = stage.wait_for(|s| matches!(s, Stage::Stop)).await.is_err();
    if gone {
        std::future::pending::<()>().await;
    }
}
