//! TCP as the chapter needs it, with no I/O: the kernel's socket table
//! ([`table`]: states, owners, TIME_WAIT timers) and the data connection's
//! 4-tuple ([`mod@tuple`]), whose reuse is what TIME_WAIT blocks; and the
//! lookup of one 4-tuple's state that the scripts run on the SSH server share
//! ([`tuple_state`]).

pub mod table;
pub mod tuple;
pub mod tuple_state;

use std::time::Duration;

pub use tuple::DataTuple;

/// How long Linux keeps a closed connection's 4-tuple in TIME_WAIT, on the side that closed
/// first (`TCP_TIMEWAIT_LEN`, not tunable; docs/real-systems.md#time_wait-and-incarnations).
pub const TIME_WAIT_LEN: Duration = Duration::from_secs(60);
