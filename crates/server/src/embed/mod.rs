//! Starting a member, etcd's `embed`: the data dir's identity and bootstrap ([`identity`],
//! [`discovery_v2`]), the listeners ([`listen`]), logging and its rotation, `sd_notify`, and
//! [`start`](crate::start), which wires raft, the apply thread, the server core and the front
//! ends together.
//!
//! It owns the process's outside: sockets, log files, the init system. It may use every other
//! room; no room may import it but the crate root and [`crate::proxy`].

pub mod discovery_v2;
pub mod identity;
pub mod listen;
pub mod sd_notify;
pub mod serve;
pub mod start;
