//! TCP as the chapter needs it, with no I/O: the kernel's socket table
//! ([`table`]: states, owners, TIME_WAIT timers) and the data connection's
//! 4-tuple ([`mod@tuple`]), whose reuse is what TIME_WAIT blocks.

pub mod table;
pub mod tuple;

pub use tuple::DataTuple;
